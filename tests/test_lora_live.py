"""Live LoRA: hooks equal the merged model, leave the shared weights untouched, stay per thread."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.lora.adapters import load_adapter
from engine.lora.live import apply_lora
from engine.lora.lowrank import Factors
from engine.models import NeuronMask, apply_mask, generate_text, wrap_model
from tests.lora_support import merged_copy, save_tiny_adapter

TEXT = "The cat sat on the mat."


def logits(loaded, text: str = TEXT) -> torch.Tensor:
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return loaded.model(ids).logits[0].float()  # (seq, vocab)


def hook_counts(loaded) -> dict[str, int]:
    """Forward hooks per module. Not simply "none": transformers 5 installs persistent capturing
    hooks on decoder layers the first time anyone asks for output_hidden_states."""
    return {name: len(m._forward_hooks) for name, m in loaded.model.named_modules()}


@pytest.fixture(scope="module")
def adapter(llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter")
    return load_adapter(save_tiny_adapter(llama.model, folder, seed=1, base="tiny-llama"))


def test_live_equals_peft_merge_and_unload(llama, adapter) -> None:
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(copy.deepcopy(llama.model), str(adapter.info.path))
    merged = wrap_model(peft_model.merge_and_unload(), llama.tokenizer)
    with apply_lora(llama, adapter.factors):
        live = logits(llama)
    expected = logits(merged)
    assert not torch.allclose(expected, logits(llama), atol=1e-3)  # the adapter does something
    torch.testing.assert_close(live, expected, atol=1e-5, rtol=0)


def test_live_equals_hand_merge_on_gpt2_conv1d(tiny_models) -> None:
    gpt2 = tiny_models["gpt2"]
    gen = torch.Generator().manual_seed(0)
    factors = {
        "transformer.h.0.attn.c_attn": Factors(
            torch.randn(96, 3, generator=gen), torch.randn(3, 32, generator=gen), 0.5
        ),
        "transformer.h.1.mlp.c_proj": Factors(
            torch.randn(32, 2, generator=gen), torch.randn(2, 128, generator=gen), 2.0
        ),
    }
    with apply_lora(gpt2, factors):
        live = logits(gpt2)
    torch.testing.assert_close(live, logits(merged_copy(gpt2, factors)), atol=1e-5, rtol=0)


def test_base_weights_stay_bit_identical(llama, adapter) -> None:
    hooks = hook_counts(llama)
    before = {k: v.clone() for k, v in llama.model.state_dict().items()}
    base = logits(llama)
    with apply_lora(llama, adapter.factors):
        logits(llama)
    after = llama.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(logits(llama), base)
    assert hook_counts(llama) == hooks


def test_another_thread_sees_the_plain_model(llama, adapter) -> None:
    base = logits(llama)
    seen: dict[str, torch.Tensor] = {}
    inside, done = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait(timeout=30)
        seen["other"] = logits(llama)
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with apply_lora(llama, adapter.factors):
        inside.set()
        done.wait(timeout=30)
        seen["mine"] = logits(llama)
    thread.join(timeout=30)
    assert torch.equal(seen["other"], base)
    assert not torch.allclose(seen["mine"], base, atol=1e-3)


def test_composes_with_a_mask_and_nests(llama, adapter, tmp_path) -> None:
    mask = NeuronMask.from_pairs([(0, 3), (0, 7), (1, 10)], mode="zero")
    merged = merged_copy(llama, adapter.factors)
    with apply_mask(merged, mask):
        expected = logits(merged)
    with apply_mask(llama, mask), apply_lora(llama, adapter.factors):
        both = logits(llama)
    torch.testing.assert_close(both, expected, atol=1e-5, rtol=0)
    with apply_lora(llama, adapter.factors), apply_mask(llama, mask):
        swapped = logits(llama)
    torch.testing.assert_close(swapped, expected, atol=1e-5, rtol=0)

    second = load_adapter(save_tiny_adapter(llama.model, tmp_path / "b", seed=2, base="x"))
    with apply_lora(llama, adapter.factors), apply_lora(llama, second.factors):
        nested = logits(llama)
    expected_two = logits(merged_copy(llama, adapter.factors, second.factors))
    torch.testing.assert_close(nested, expected_two, atol=1e-5, rtol=0)


def test_generate_text_under_apply_lora(llama, adapter) -> None:
    merged = merged_copy(llama, adapter.factors)
    with apply_lora(llama, adapter.factors):
        live = generate_text(llama, "Hello", max_new_tokens=8, chat=False)
    expected = generate_text(merged, "Hello", max_new_tokens=8, chat=False)
    assert live.text == expected.text


def test_side_by_side_batches_like_one_prompt_at_a_time(llama, adapter) -> None:
    from engine.lora.compare import side_by_side

    prompts = ["Hi", "The cat sat on", "x = 1 +"]  # different lengths: left padding at work
    table = side_by_side(llama, prompts, {"base": None, "lora": adapter.factors}, max_new_tokens=6)
    assert list(table.columns) == ["prompt", "base", "lora"]
    with apply_lora(llama, adapter.factors):
        one_by_one = [generate_text(llama, p, max_new_tokens=6, chat=False).text for p in prompts]
    assert table["lora"].tolist() == one_by_one
    assert table["base"].tolist() == [
        generate_text(llama, p, max_new_tokens=6, chat=False).text for p in prompts
    ]


def test_empty_or_none_factors_do_nothing(llama) -> None:
    base = logits(llama)
    for factors in (None, {}):
        with apply_lora(llama, factors):
            assert torch.equal(logits(llama), base)


def test_clear_errors(llama) -> None:
    hooks = hook_counts(llama)

    def enter(factors) -> None:
        with apply_lora(llama, factors):
            pass

    f = Factors(torch.ones(32, 2), torch.ones(2, 32))
    with pytest.raises(SubnetScopeError, match="does not have"):
        enter({"model.layers.9.self_attn.q_proj": f})
    with pytest.raises(SubnetScopeError, match="not a linear layer"):
        enter({"model.layers.0.mlp": f})
    with pytest.raises(SubnetScopeError, match="another model"):
        enter({"model.layers.0.mlp.up_proj": f})  # up is 48×32
    assert hook_counts(llama) == hooks
