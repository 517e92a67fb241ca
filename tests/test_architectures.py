"""Architecture adapters on tiny random models of each supported family, and the fallback rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.errors import SubnetScopeError
from engine.models import architecture_facts, detect_architecture, model_summary
from engine.models.summary import parameters_by_kind
from tests.tiny import FAMILIES

EXPECTED = {
    "gpt2": ("GPT-2", "transformer.h.1.mlp.c_fc", None, "transformer.h.1.mlp.c_proj", 128),
    "llama": (
        "Llama",
        "model.layers.1.mlp.up_proj",
        "model.layers.1.mlp.gate_proj",
        "model.layers.1.mlp.down_proj",
        48,
    ),
    "qwen2": (
        "Qwen2",
        "model.layers.1.mlp.up_proj",
        "model.layers.1.mlp.gate_proj",
        "model.layers.1.mlp.down_proj",
        48,
    ),
    "gemma3": (
        "Gemma-3",
        "model.layers.1.mlp.up_proj",
        "model.layers.1.mlp.gate_proj",
        "model.layers.1.mlp.down_proj",
        48,
    ),
    "gemma3n": (
        "Gemma-3n",
        "model.layers.1.mlp.up_proj",
        "model.layers.1.mlp.gate_proj",
        "model.layers.1.mlp.down_proj",
        40,
    ),
    "bert": (
        "BERT",
        "bert.encoder.layer.1.intermediate.dense",
        None,
        "bert.encoder.layer.1.output.dense",
        48,
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_adapter_finds_mlp_modules(tiny_models, family) -> None:
    loaded = tiny_models[family]
    arch = loaded.architecture
    name, up, gate, down, width_layer1 = EXPECTED[family]
    assert arch.family == name and not arch.fallback
    assert arch.num_layers == 2 and arch.hidden_size == 32
    block = arch.blocks[1]
    assert (block.up, block.gate, block.down) == (up, gate, down)
    assert arch.neurons_per_layer[1] == width_layer1
    assert len(block.attention) >= 2 and len(block.norms) >= 2
    # the neuron axis is the down projection's input: check it against the weight shape
    down_weight = loaded.model.get_submodule(block.down).weight
    in_axis = 0 if arch.transposed_weights else 1
    assert down_weight.shape[in_axis] == width_layer1


def test_gemma3n_reports_per_layer_widths(tiny_models) -> None:
    facts = architecture_facts(tiny_models["gemma3n"])
    assert facts["intermediate_size"] == [48, 40]
    assert [layer["neurons"] for layer in facts["layers"]] == [48, 40]


@pytest.mark.parametrize("family", FAMILIES)
def test_summary_tables_count_every_parameter(tiny_models, family) -> None:
    loaded = tiny_models[family]
    by_kind = parameters_by_kind(loaded)
    assert by_kind["parameters"].sum() == sum(p.numel() for p in loaded.model.parameters())
    assert by_kind["share"].sum() == pytest.approx(1.0)
    summary = model_summary(loaded)
    assert set(summary["layer"]) == {0, 1}
    mlp_rows = summary[summary["role"].str.startswith("mlp.")]
    assert (mlp_rows["parameters"] > 0).all()


class _Block(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.wi = nn.Linear(hidden, inner)
        self.wo = nn.Linear(inner, hidden)

    def forward(self, x):
        return x + self.wo(torch.relu(self.wi(x)))


class _Config:
    model_type = "mystery"
    hidden_size = 8


class _Unknown(nn.Module):
    def __init__(self, inner: int = 16) -> None:
        super().__init__()
        self.config = _Config()
        self.blocks = nn.ModuleList(_Block(8, inner) for _ in range(3))


def test_unknown_architecture_falls_back_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="fallback rule"):
        arch = detect_architecture(_Unknown())
    assert arch.fallback
    assert [b.down for b in arch.blocks] == ["blocks.0.wo", "blocks.1.wo", "blocks.2.wo"]
    assert arch.neurons_per_layer == (16, 16, 16)


def test_model_without_mlp_is_one_clear_error() -> None:
    with pytest.raises(SubnetScopeError, match="cannot find the MLP layers of this 'mystery'"):
        detect_architecture(_Unknown(inner=4))
