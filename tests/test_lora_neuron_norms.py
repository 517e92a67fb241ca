"""Per-neuron ΔW norms of LoRA adapters: exact against PEFT's dense ΔW, by suffix, NaN if absent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.errors import SubnetScopeError
from engine.lora.adapters import load_adapter
from engine.lora.lowrank import Factors
from engine.lora.neuron_norms import COLUMNS, neuron_delta_norms
from tests.lora_support import make_adapter, peft_delta, peft_model_with
from tests.tiny import tiny_model

MLP = {"llama": ("up_proj", "gate_proj", "down_proj"), "gpt2": ("c_fc", "c_proj")}


def _expected(peft, architecture, roles: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Row norms of up/gate and column norms of down from PEFT's own dense (out, in) ΔW."""
    out = {}
    for role in roles:
        per_layer = []
        for block in architecture.blocks:
            delta = peft_delta(peft, getattr(block, role), "a0").double()  # (out, in)
            per_layer.append(delta.norm(dim=0 if role == "down" else 1).numpy())
        out[role] = np.concatenate(per_layer)
    return out


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_norms_match_peft_dense_update(tmp_path, family) -> None:
    path = make_adapter(tmp_path / "a", 3, family=family, targets=MLP[family], alpha=6)
    adapter = load_adapter(path)
    architecture = tiny_model(family).architecture
    table = neuron_delta_norms(adapter, architecture)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == sum(architecture.neurons_per_layer)
    assert table.groupby("layer")["neuron"].apply(list).tolist() == [
        list(range(w)) for w in architecture.neurons_per_layer
    ]
    roles = ("up", "gate", "down") if family == "llama" else ("up", "down")
    expected = _expected(peft_model_with([path], family), architecture, roles)
    for role in roles:
        np.testing.assert_allclose(table[role], expected[role], rtol=1e-5, atol=1e-7)
    total = np.sqrt(sum(expected[r] ** 2 for r in roles))
    np.testing.assert_allclose(table["total"], total, rtol=1e-5, atol=1e-7)
    if family == "gpt2":
        assert table["gate"].isna().all()  # GPT-2 has no gate


def test_modules_not_targeted_are_nan(tmp_path) -> None:
    architecture = tiny_model("llama").architecture
    only_up = load_adapter(make_adapter(tmp_path / "up", 0, targets=("up_proj", "q_proj")))
    table = neuron_delta_norms(only_up, architecture)
    assert table["gate"].isna().all() and table["down"].isna().all()
    assert (table["up"] > 0).all()
    np.testing.assert_allclose(table["total"], table["up"])
    attention = load_adapter(make_adapter(tmp_path / "qv", 0))  # q_proj, v_proj only
    table = neuron_delta_norms(attention, architecture)
    assert len(table) == sum(architecture.neurons_per_layer)
    assert table[["up", "gate", "down", "total"]].isna().all().all()


@pytest.mark.parametrize("rename", [lambda p: p.removeprefix("model."), lambda p: f"base.{p}"])
def test_module_paths_match_by_suffix(tmp_path, rename) -> None:
    architecture = tiny_model("llama").architecture
    adapter = load_adapter(make_adapter(tmp_path / "a", 1, targets=MLP["llama"]))
    renamed = dataclasses.replace(
        adapter, factors={rename(p): f for p, f in adapter.factors.items()}
    )
    assert set(renamed.factors) != set(adapter.factors)
    expected = neuron_delta_norms(adapter, architecture)
    np.testing.assert_allclose(
        neuron_delta_norms(renamed, architecture)[list(COLUMNS)], expected[list(COLUMNS)]
    )


def test_factor_shapes_that_do_not_fit_are_refused(tmp_path) -> None:
    architecture = tiny_model("llama").architecture
    adapter = load_adapter(make_adapter(tmp_path / "a", 0, targets=("up_proj",)))
    wrong = dict(adapter.factors)
    wrong["model.layers.1.mlp.up_proj"] = Factors(torch.ones(40, 2), torch.ones(2, 32), 1.0)
    with pytest.raises(SubnetScopeError, match="does not fit layer 1's 48 neurons"):
        neuron_delta_norms(dataclasses.replace(adapter, factors=wrong), architecture)
    doubled = {f"{tower}.{p}": f for p, f in adapter.factors.items() for tower in ("x", "y")}
    with pytest.raises(SubnetScopeError, match="ambiguous"):
        neuron_delta_norms(dataclasses.replace(adapter, factors=doubled), architecture)
