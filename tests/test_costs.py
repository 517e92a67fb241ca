"""The arithmetic of docs/scale.md: each term checked against what it counts."""

from __future__ import annotations

import copy
import json

import pytest

from engine.models.costs import LORA_RANK, Shape, analysis_costs
from engine.models.memory import GB


def test_lora_term_is_the_adapter_peft_builds(llama):
    from peft import LoraConfig, get_peft_model

    model = llama.model
    shape = Shape.of(model.config, sum(p.numel() for p in model.parameters()))
    linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(
        copy.deepcopy(model), LoraConfig(r=LORA_RANK, target_modules=linear)
    )
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == LORA_RANK * shape.linear_in_out * shape.layers


def test_forward_flops_and_weight_bytes_of_the_8b_plan():
    from engine.models.zoo import zoo_config, zoo_plan

    plan = zoo_plan("llama-3.1-8b")
    costs = {
        c.analysis: c for c in analysis_costs(Shape.of(zoo_config("llama-3.1-8b"), plan.parameters))
    }
    forward = costs["forward (inference, masks)"]
    assert forward.flops == pytest.approx(2 * 8_030_261_248 * 512)
    assert forward.bytes_read == plan.weight_bytes
    assert costs["LRP (LXT)"].flops == pytest.approx(3 * forward.flops)
    # Mixed-precision AdamW: 16 bytes a parameter (the textbook 8B figure of ~128 GB)
    assert costs["full SFT step"].memory_bytes > 16 * plan.parameters
    assert costs["sparsity diff"].bytes_read == 2 * plan.weight_bytes


def test_plan_with_analyses_works_for_an_unbuilt_zoo_model(capsys, tmp_path, monkeypatch):
    from engine.cli import main

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    assert (
        main(["models", "plan", "zoo/llama-3.1-70b", "--dtype", "bf16", "--analyses", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["parameters"] == 70_553_706_496
    assert not report["fits"]
    rows = {row["analysis"]: row for row in report["analyses"]}
    assert rows["forward (inference, masks)"]["memory_bytes"] / GB == pytest.approx(131.7, abs=0.1)
