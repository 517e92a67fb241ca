"""The model zoo: real published shapes, counted without materializing, built as bf16 folders."""

from __future__ import annotations

import json
import resource

import pytest

from engine.errors import SubnetScopeError
from engine.models.zoo_configs import ZOO
from tests.zoo_support import zoo_folder


@pytest.mark.parametrize("name", [n for n, s in ZOO.items() if s.parameters is not None])
def test_meta_count_is_the_published_count(name):
    from engine.models.zoo import zoo_plan

    plan = zoo_plan(name)
    assert plan.parameters == ZOO[name].parameters
    assert plan.dtype == "bfloat16"
    assert plan.weight_bytes == 2 * plan.parameters


def test_the_8b_plan_materializes_nothing():
    from engine.models.zoo import zoo_plan

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plan = zoo_plan("llama-3.1-8b", "fp32")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert plan.parameters == 8_030_261_248
    assert plan.weight_bytes == 4 * 8_030_261_248  # 32 GB in fp32
    assert grown_mb < 200, f"planning the 8B model grew the process by {grown_mb:.0f} MB"


def test_gemma3_keeps_its_attention_pattern():
    from engine.models.zoo import zoo_config

    config = zoo_config("gemma-3-1b")
    assert config.vocab_size == 262144
    assert config.layer_types[:6] == ["sliding_attention"] * 5 + ["full_attention"]
    assert config.layer_types.count("full_attention") == 4  # layers 5, 11, 17, 23 of 26
    assert config.sliding_window == 512
    rope = config.rope_parameters
    assert rope["sliding_attention"]["rope_theta"] == 10_000.0
    assert rope["full_attention"]["rope_theta"] == 1_000_000.0


def test_zoo_models_are_named_sources_and_unbuilt_ones_say_how(tmp_path, monkeypatch):
    from engine.models import load_model
    from engine.models.sources import named_sources

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    assert {f"zoo/{name}" for name in ZOO} <= set(named_sources())
    with pytest.raises(SubnetScopeError, match="models zoo --build llama-3.2-1b"):
        load_model("zoo/llama-3.2-1b")
    with pytest.raises(SubnetScopeError, match="no zoo model 'llama-9b'"):
        from engine.models.zoo import zoo_spec

        zoo_spec("llama-9b")


def test_a_build_that_would_not_fit_is_refused_before_allocating(tmp_path, monkeypatch):
    import engine.models.memory as memory
    from engine.models.zoo import build_zoo_model

    monkeypatch.setattr(memory, "free_bytes", lambda device: 4 * 1024**3)
    with pytest.raises(SubnetScopeError, match="'zoo/llama-3.1-8b' would not fit: 8,030M"):
        build_zoo_model("llama-3.1-8b", tmp_path / "8b")
    assert not (tmp_path / "8b").exists()


def test_zoo_cli_lists_plans_without_building(capsys, tmp_path, monkeypatch):
    from engine.cli import main

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    assert main(["models", "zoo", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(ZOO)
    assert rows["llama-3.1-8b"]["bf16_gb"] == pytest.approx(14.96, abs=0.01)
    assert not any(row["built"] for row in rows.values())


@pytest.mark.slow
def test_a_built_zoo_model_loads_in_bf16_with_its_shape():
    from engine.models import load_model

    folder = zoo_folder("qwen2.5-0.5b")
    marker = json.loads((folder / "subnetscope-zoo.json").read_text())
    assert marker["parameters"] == ZOO["qwen2.5-0.5b"].parameters
    loaded = load_model(str(folder))  # auto: the checkpoint's bf16, which this CPU runs
    assert str(loaded.dtype) == "torch.bfloat16"
    assert loaded.model.config.vocab_size == 151936
    assert sum(p.numel() for p in loaded.model.parameters()) == ZOO["qwen2.5-0.5b"].parameters
    assert loaded.tokenizer.eos_token_id == loaded.model.config.eos_token_id
