"""Template JSON: round trip in seed 001's layout, validation against a model, lesion/preserve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import SubnetScopeError
from engine.ica import (
    Templates,
    active_neurons,
    format_layers,
    ica_mask,
    load_templates,
    parse_layers,
    parse_templates,
)
from engine.ica.explore import jaccard_overlaps, key_neuron_counts, late_layer_share


def tiny_templates(arch) -> Templates:
    return Templates(
        components={0: {0: [1, 2, 3], 1: [5]}, 1: {1: [5, 6]}, 2: {0: [40]}},
        metadata={
            "model": "tiny-llama",
            "family": arch.family,
            "neurons_per_layer": list(arch.neurons_per_layer),
            "layers": [0, 1],
        },
    )


def test_layer_specs():
    assert parse_layers("all", 4) == (0, 1, 2, 3)
    assert parse_layers(None, 2) == (0, 1)
    assert parse_layers("0-2", 4) == (0, 1, 2)
    assert parse_layers("3,0-1", 4) == (0, 1, 3)
    assert parse_layers("[0, 2]", 4) == (0, 2)
    assert parse_layers([2, 0, 2], 4) == (0, 2)
    assert format_layers([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    bad_specs = [("0-9", "layer 4 does not exist"), ("x", "cannot read"), ("3-1", "backwards")]
    for bad, message in bad_specs:
        with pytest.raises(SubnetScopeError, match=message):
            parse_layers(bad, 4)


def test_json_round_trip_keeps_seed_layout(tmp_path, tiny_models):
    arch = tiny_models["llama"].architecture
    original = tiny_templates(arch)
    path = original.save(tmp_path / "t.json")
    raw = json.loads(path.read_text())
    assert raw["templates"] == {
        "0": {"0": [1, 2, 3], "1": [5]},
        "1": {"1": [5, 6]},
        "2": {"0": [40]},
    }
    assert raw["metadata"]["model"] == "tiny-llama"
    loaded = load_templates(path)
    assert loaded.components == original.components
    assert loaded.metadata == {**original.metadata, "space": "mlp_neurons"}
    assert loaded.space == "mlp_neurons" and "layout" not in raw  # layout: mlp_out files only


def test_bare_seed_file_loads(tmp_path):
    path = tmp_path / "global_templates.json"
    path.write_text(json.dumps({"0": {"2": [7, 3, 3]}, "4": {"0": [1]}}))
    templates = load_templates(path)
    assert templates.components == {0: {2: [3, 7]}, 4: {0: [1]}}
    assert templates.metadata == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({}, "hold no components"),
        ({"0": [1, 2]}, "must map layer"),
        ({"a": {"0": [1]}}, "component id 'a' is not an integer"),
        ({"0": {"0": ["x"]}}, "channel of component 0 'x'"),
        ({"format": "other", "templates": {"0": {}}}, "not ICA templates"),
        ({"format": "subnetscope.ica-templates", "version": 9, "templates": {"0": {}}}, "ver"),
    ],
)
def test_malformed_templates_are_one_clear_error(data, message):
    with pytest.raises(SubnetScopeError, match=message):
        parse_templates(data)


def test_unreadable_files(tmp_path):
    with pytest.raises(SubnetScopeError, match="no ICA templates at"):
        load_templates(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SubnetScopeError, match="not valid JSON"):
        load_templates(bad)


def test_validation_against_models(tiny_models):
    llama = tiny_models["llama"].architecture
    templates = tiny_templates(llama)
    templates.validate(llama)
    with pytest.raises(SubnetScopeError, match="built on a Llama model .* GPT-2"):
        templates.validate(tiny_models["gpt2"].architecture, "tiny-gpt2")
    bare = Templates(components={0: {0: [48]}})  # the tiny Llama has neurons 0..47
    with pytest.raises(
        SubnetScopeError, match="channel 48 of layer 0, but the mlp_neurons .* 0..47"
    ):
        bare.validate(llama)
    with pytest.raises(SubnetScopeError, match="names layer 7"):
        Templates(components={0: {7: [0]}}).validate(llama)
    other_width = Templates(components={0: {0: [1]}}, metadata={"neurons_per_layer": [64, 64]})
    with pytest.raises(SubnetScopeError, match="2 layers × 64 neurons"):
        other_width.validate(llama)


def test_lesion_and_preserve_masks(tiny_models):
    arch = tiny_models["llama"].architecture
    templates = tiny_templates(arch)
    lesion = ica_mask(templates, [0, 1], "lesion")
    assert lesion.space == "mlp_neurons" and lesion.meta["space"] == "mlp_neurons"
    assert lesion.mask.mode == "zero" and lesion.mask.neurons == {0: (1, 2, 3), 1: (5, 6)}
    preserve = ica_mask(templates, [1], "preserve")
    assert preserve.mask.mode == "keep" and preserve.mask.layers == (0, 1)
    active = active_neurons(preserve, arch)
    assert active[0].sum() == 0 and active[1].nonzero().flatten().tolist() == [5, 6]
    with pytest.raises(SubnetScopeError, match="component 9 is not in these templates"):
        ica_mask(templates, [9], "lesion")
    with pytest.raises(SubnetScopeError, match="lesion or preserve"):
        ica_mask(templates, [0], "ablate")
    with pytest.raises(SubnetScopeError, match="at least one component"):
        ica_mask(templates, [], "lesion")


def test_counts_and_overlaps(tiny_models):
    templates = tiny_templates(tiny_models["llama"].architecture)
    counts = key_neuron_counts(templates)
    assert counts.set_index(["component", "layer"])["neurons"].to_dict() == {
        (0, 0): 3,
        (0, 1): 1,
        (1, 0): 0,
        (1, 1): 2,
        (2, 0): 1,
        (2, 1): 0,
    }
    overlaps = jaccard_overlaps(templates).set_index(["a", "b"])["jaccard"]
    assert overlaps[(0, 1)] == overlaps[(1, 0)] == pytest.approx(1 / 5)
    assert overlaps[(0, 0)] == 1.0 and overlaps[(1, 2)] == 0.0
    assert np.isclose(overlaps.sum(), 3 + 2 / 5)
    # last layer's share per component: 1/4, 2/2, 0/1
    assert late_layer_share(templates, last=1) == pytest.approx((0.25 + 1 + 0) / 3)
