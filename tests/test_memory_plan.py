"""Precision and memory decided before loading (issue 19, item 1): the dtype a load takes, the
memory it will need from the config alone, and the one-sentence refusal of a load that would not
fit."""

from __future__ import annotations

import json

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.models.memory import GB, MemoryPlan, check_fits, count_parameters, plan_for_config
from engine.models.precision import checkpoint_dtype, dtype_choice, resolve_dtype
from tests.tiny import tiny_config, tiny_model

CPU = torch.device("cpu")


def test_dtype_choices_and_their_errors():
    assert [dtype_choice(v) for v in (None, "auto", "BF16", "float16", torch.float32)] == [
        "auto",
        "auto",
        "bf16",
        "fp16",
        "fp32",
    ]
    with pytest.raises(SubnetScopeError, match="unknown dtype 'int8'; use one of auto, bf16"):
        dtype_choice("int8")


def test_auto_is_the_checkpoints_dtype_where_the_device_computes_in_it():
    assert resolve_dtype("auto", CPU, torch.bfloat16) == torch.bfloat16
    assert resolve_dtype("auto", CPU, torch.float32) == torch.float32
    assert resolve_dtype("auto", CPU, None) == torch.float32  # a GGUF names none
    assert resolve_dtype("auto", CPU, torch.float16) == torch.float32  # fp16 is slow on CPU
    assert resolve_dtype("auto", torch.device("mps"), torch.bfloat16) == torch.float32
    assert resolve_dtype("fp16", CPU, torch.float32) == torch.float16  # asked for: as asked


def test_checkpoint_dtype_reads_the_config():
    config = tiny_config("llama")
    config.dtype = torch.bfloat16
    assert checkpoint_dtype(config) == torch.bfloat16
    assert checkpoint_dtype(object()) is None


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "gemma3", "gemma3n", "bert"])
def test_parameters_counted_on_the_meta_device_equal_the_real_model(family):
    real = sum(p.numel() for p in tiny_model(family).model.parameters())
    assert count_parameters(tiny_config(family)) == real


def test_a_plan_counts_bytes_by_dtype_and_refuses_what_does_not_fit():
    config = tiny_config("llama")
    fp32 = plan_for_config(config, torch.float32, CPU, "tiny")
    bf16 = plan_for_config(config, torch.bfloat16, CPU, "tiny")
    assert fp32.weight_bytes == 2 * bf16.weight_bytes == 4 * fp32.parameters
    assert fp32.forward_bytes == bf16.forward_bytes > 0
    check_fits(fp32, free=10 * GB)
    with pytest.raises(SubnetScopeError) as refused:
        check_fits(fp32, free=fp32.total_bytes)  # over 90 % of what is free
    message = str(refused.value)
    assert message.startswith("'tiny' would not fit:") and "CPU has" in message
    assert "\n" not in message


def test_an_8b_config_is_planned_without_materializing_it():
    from transformers import LlamaConfig

    config = LlamaConfig(  # Llama-3.1-8B's shapes
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
    )
    plan = plan_for_config(config, torch.bfloat16, CPU, "llama-8b")
    assert plan.parameters == 8_030_261_248
    assert round(plan.weight_bytes / GB, 1) == 15.0
    with pytest.raises(SubnetScopeError, match="would not fit"):
        check_fits(plan, free=8 * GB)


def test_load_model_refuses_before_reading_weights(tiny_folder, monkeypatch):
    from engine.models import loading

    folder = tiny_folder("llama")
    read = []
    with monkeypatch.context() as patched:
        patched.setattr(loading, "_load_kwargs", lambda *a: read.append(a) or {})
        patched.setattr("engine.models.memory.free_bytes", lambda device: 1024)
        with pytest.raises(SubnetScopeError, match="would not fit"):
            loading.load_model(folder)
    assert read == []  # refused from the config: no weight was read
    loaded = loading.load_model(folder, check_memory=False, dtype="bf16")
    assert loaded.dtype == torch.bfloat16


def test_the_cli_plans_from_the_config(tiny_folder, capsys):
    from engine.cli import main

    folder = tiny_folder("llama")
    assert main(["models", "plan", folder, "--dtype", "bf16", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dtype"] == "bfloat16" and plan["fits"] is True
    assert plan["weight_bytes"] == 2 * plan["parameters"]
    assert main(["models", "plan", folder]) == 0
    assert "fits" in capsys.readouterr().out
    assert isinstance(MemoryPlan, type)


def test_the_model_picker_shows_the_plan_and_never_prepares_the_demo(tmp_path, monkeypatch):
    from engine.models.demo import demo_is_ready
    from tests.page_support import open_page

    at = open_page(monkeypatch, "sparsity", cache=tmp_path)  # empty workspace: no demo model
    assert not demo_is_ready()  # planning did not build it
    assert not any("Loading needs" in c.value for c in at.sidebar.caption)


def test_the_model_picker_shows_the_plan_of_a_folder(tmp_path, monkeypatch):
    from tests.page_support import open_page
    from tests.tiny import save_tiny_folder

    save_tiny_folder(tmp_path / "models" / "tiny-llama", "llama")
    at = open_page(monkeypatch, "model", cache=tmp_path / "cache", models=tmp_path / "models")
    picker = at.sidebar.selectbox(key="model_picker")
    folder = next(o for o in picker.options if "tiny-llama" in o)
    at = picker.set_value(picker.options[picker.options.index(folder)]).run()
    captions = [c.value for c in at.sidebar.caption if "Loading needs" in c.value]
    assert captions and "parameters in float32" in captions[0] and "fits" in captions[0]
