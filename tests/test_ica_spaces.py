"""Neuron spaces of ICA templates: mlp_out (seed 001's reference: the down projection's output)
and mlp_neurons (its input). Seed-001 files load in their own space, wrong-space loads are errors,
and masks in each space equal zeroing the matching rows / columns of the down projection."""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch

from engine.errors import SubnetScopeError
from engine.ica import (
    BuildConfig,
    Templates,
    apply_space_mask,
    build_templates,
    capture_activations,
    ica_mask,
    load_arrays,
    load_templates,
)
from engine.ica.explore import component_neurons, time_course
from engine.ica.masks import active_neurons, switched_off
from engine.models.architectures import detect_architecture
from engine.training.anti_drift import apply_anti_drift, drift

TEXTS = ["The cat sat on the mat.", "def f(x):\n    return x + 1", "Rain, then sun."]

# What seed 001's reference writes (ICAMask.build_templates_from_current_components, then
# save_templates: json.dump(templates, f, indent=2)) for a 2-layer model of hidden size 32; int
# component ids become JSON strings. Transcribed by hand from the reference, not produced by us.
SEED_GLOBAL_TEMPLATES = """{
  "name": "global_templates_v1",
  "layout": {
    "captured_layers_sorted": [
      0,
      1
    ],
    "hidden_size": 32
  },
  "templates": {
    "0": {
      "0": [
        3,
        17
      ],
      "1": [
        31
      ]
    },
    "1": {
      "1": [
        0,
        5,
        9
      ]
    }
  }
}"""


def seed_file(tmp_path, text: str = SEED_GLOBAL_TEMPLATES):
    path = tmp_path / "ica_templates" / "tiny" / "prose" / "global_templates.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def seed_load_and_flatten(path) -> dict[int, np.ndarray]:
    """Seed 001's ICAMask.load_templates + _flatten_support, transcribed: each component's support
    as a flat boolean vector over captured_layers_sorted × hidden_size."""
    templates = json.loads(path.read_text())
    templates["templates"] = {
        int(k): {str(ly): list(map(int, v2)) for ly, v2 in v.items()}
        for k, v in templates["templates"].items()
    }
    layers = list(templates["layout"]["captured_layers_sorted"])
    hidden = int(templates["layout"]["hidden_size"])
    local = {int(ly): i for i, ly in enumerate(layers)}
    out = {}
    for cid, comp in templates["templates"].items():
        flat = np.zeros(len(layers) * hidden, dtype=bool)
        for ly, chans in comp.items():
            for ch in chans:
                flat[local[int(ly)] * hidden + int(ch)] = True
        out[cid] = flat
    return out


def test_a_seed_001_file_loads_in_the_mlp_out_space(tmp_path, tiny_models):
    path = seed_file(tmp_path)
    templates = load_templates(path)
    assert templates.space == "mlp_out"
    assert templates.components == {0: {0: [3, 17], 1: [31]}, 1: {1: [0, 5, 9]}}
    assert templates.layers == [0, 1] and templates.metadata["hidden_size"] == 32
    assert templates.metadata["name"] == "global_templates_v1"
    assert templates.layer_widths() == [32, 32]
    templates.validate(tiny_models["llama"].architecture, space="mlp_out")
    assert load_templates(path, space="mlp_out").components == templates.components
    mask = ica_mask(templates, [0, 1], "lesion")
    assert mask.space == "mlp_out" and mask.mask.neurons == {0: (3, 17), 1: (0, 5, 9, 31)}


def test_loading_into_the_wrong_space_is_an_error_that_says_so(tmp_path, tiny_models):
    llama = tiny_models["llama"].architecture  # hidden 32, 48 intermediate neurons
    path = seed_file(tmp_path)
    with pytest.raises(SubnetScopeError, match="hold mlp_out channels .* mlp_neurons .* asked"):
        load_templates(path, space="mlp_neurons")
    with pytest.raises(SubnetScopeError, match="hold mlp_out channels"):
        load_templates(path).validate(llama, space="mlp_neurons")
    # a channel a hidden-size layout cannot have (it would be a valid intermediate neuron)
    beyond = SEED_GLOBAL_TEMPLATES.replace("        31\n", "        40\n")
    with pytest.raises(SubnetScopeError, match="channel 40 of layer 1, beyond .* hidden size 32"):
        load_templates(seed_file(tmp_path / "b", beyond))
    # the same layout on a model of another hidden size
    other = detect_architecture(_tiny_llama(hidden=16))
    with pytest.raises(SubnetScopeError, match="32 MLP output channels .* hidden size 16"):
        load_templates(path).validate(other, "other")
    # a bare mapping takes the space asked for, and its channels are checked in that space
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"0": {"0": [40]}}))
    load_templates(bare, space="mlp_neurons").validate(llama)
    with pytest.raises(SubnetScopeError, match="channel 40 of layer 0, but the mlp_out space"):
        load_templates(bare, space="mlp_out").validate(llama)
    # our own files without a recorded space are mlp_neurons files
    legacy = tmp_path / "legacy.json"
    legacy.write_text(
        json.dumps(
            {
                "format": "subnetscope.ica-templates",
                "version": 1,
                "metadata": {},
                "templates": {"0": {"0": [1]}},
            }
        )
    )
    with pytest.raises(SubnetScopeError, match="hold mlp_neurons channels"):
        load_templates(legacy, space="mlp_out")
    with pytest.raises(SubnetScopeError, match="unknown neuron space"):
        load_templates(legacy, space="hidden")


def test_our_mlp_out_files_carry_the_seed_layout_block(tmp_path):
    templates = Templates(
        components={0: {0: [3, 17], 1: [31]}, 1: {1: [0, 5, 9]}},
        metadata={"space": "mlp_out", "layers": [0, 1], "hidden_size": 32},
    )
    path = templates.save(tmp_path / "t.json")
    raw = json.loads(path.read_text())
    assert raw["layout"] == {"captured_layers_sorted": [0, 1], "hidden_size": 32}
    assert raw["metadata"]["space"] == "mlp_out"
    # the seed's own loader reads it to the same supports as the seed's file
    ours, seeds = seed_load_and_flatten(path), seed_load_and_flatten(seed_file(tmp_path))
    assert ours.keys() == seeds.keys()
    assert all(np.array_equal(ours[c], seeds[c]) for c in ours)
    assert load_templates(path).components == templates.components


def _tiny_llama(hidden: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).eval()


def _zero_down(model, arch, layer: int, index: list[int], space: str) -> None:
    """The independent computation: zero the down projection's weights for `index` (its output
    rows and bias entries for mlp_out, its input columns for mlp_neurons)."""
    down = arch.down_module(model, layer)
    out_axis, in_axis = (1, 0) if arch.transposed_weights else (0, 1)
    with torch.no_grad():
        if space == "mlp_out":
            down.weight.index_fill_(out_axis, torch.tensor(index, dtype=torch.long), 0.0)
            if down.bias is not None:
                down.bias[index] = 0.0
        else:
            down.weight.index_fill_(in_axis, torch.tensor(index, dtype=torch.long), 0.0)


def _logits(model, ids) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("space", ["mlp_out", "mlp_neurons"])
@pytest.mark.parametrize("mode", ["lesion", "preserve"])
def test_masks_equal_zeroed_down_projection_weights(tiny_models, family, space, mode):
    loaded = tiny_models[family]
    arch = loaded.architecture
    width = arch.hidden_size if space == "mlp_out" else arch.neurons_per_layer[0]
    templates = Templates(
        components={0: {0: [1, 4, width - 1], 1: [2]}, 1: {1: [0, 7]}},
        metadata={"space": space, "layers": [0, 1], "hidden_size": arch.hidden_size},
    )
    ids = loaded.tokenizer("The cat sat.", return_tensors="pt")["input_ids"]
    base = _logits(loaded.model, ids)
    mask = ica_mask(templates, [0], mode)
    with apply_space_mask(loaded, mask):
        masked = _logits(loaded.model, ids)

    reference = copy.deepcopy(loaded.model)
    chosen = templates.components[0]
    for layer in (0, 1):
        picked = chosen.get(layer, [])
        index = picked if mode == "lesion" else [i for i in range(width) if i not in picked]
        if index:
            _zero_down(reference, arch, layer, index, space)
    expected = _logits(reference, ids)
    torch.testing.assert_close(masked, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(masked, base)
    torch.testing.assert_close(_logits(loaded.model, ids), base)  # the shared model is untouched
    off = 4 if mode == "lesion" else 2 * width - 4
    assert switched_off(mask, arch) == off


def _mlp_module(model, layer: int):
    """The MLP block itself, which seed 001's reference hooks (`block.mlp`)."""
    blocks = model.transformer.h if hasattr(model, "transformer") else model.model.layers
    return blocks[layer].mlp


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_mlp_out_capture_matches_the_references_mlp_output_hook(tiny_models, family):
    loaded = tiny_models[family]
    acts = capture_activations(loaded, TEXTS, (0, 1), batch_size=2, space="mlp_out")
    hidden = loaded.architecture.hidden_size
    assert acts.space == "mlp_out" and acts.widths == (hidden, hidden)
    assert acts.matrix.shape == (acts.num_tokens, 2 * hidden)
    for i, text in enumerate(TEXTS):
        seen: list[torch.Tensor] = []

        def keep(module, args, out, seen=seen):
            seen.append(out[0].clone())

        handles = [_mlp_module(loaded.model, layer).register_forward_hook(keep) for layer in (0, 1)]
        try:
            _logits(loaded.model, loaded.tokenizer(text, return_tensors="pt")["input_ids"])
        finally:
            for h in handles:
                h.remove()
        rows = acts.matrix[acts.text_index == i]
        np.testing.assert_allclose(rows[:, :hidden], seen[0], atol=1e-5)
        np.testing.assert_allclose(rows[:, hidden:], seen[1], atol=1e-5)


@pytest.fixture(scope="module")
def built_out(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ica-out")
    prose, code = folder / "prose.txt", folder / "code.txt"
    prose.write_text("\n\n".join(f"The {w} walked to the market at dawn." for w in "abcdefghij"))
    code.write_text("\n\n".join(f"for i in range({n}):\n    x += i * {n}" for n in range(10)))
    config = BuildConfig(
        model="tiny",
        datasets=(str(prose), str(code)),
        samples_per_ds=10,
        components=4,
        percentile=90.0,
        layers="all",
        max_length=64,
        space="mlp_out",
    )
    templates = build_templates(config, folder / "t.json", loaded=tiny_models["llama"])
    return templates, load_arrays(templates.path)


def test_build_in_the_mlp_out_space_records_it(built_out, tiny_models):
    templates, arrays = built_out
    loaded = tiny_models["llama"]
    raw = json.loads(templates.path.read_text())
    assert raw["metadata"]["space"] == "mlp_out" and raw["metadata"]["standardized"] is True
    assert raw["layout"] == {"captured_layers_sorted": [0, 1], "hidden_size": 32}
    again = load_templates(templates.path, space="mlp_out")
    assert again.space == "mlp_out" and arrays.mixing.shape == (2 * 32, 4)
    assert all(0 <= n < 32 for c in again.component_ids for _, n in again.neurons(c))
    again.validate(loaded.architecture, space="mlp_out")
    with pytest.raises(SubnetScopeError, match="hold mlp_out channels"):
        load_templates(templates.path, space="mlp_neurons")
    # time courses are captured in the file's space: they reproduce the stored sources
    course = time_course(loaded, again, arrays, arrays.texts[0])
    first = arrays.sources[arrays.text_index == 0]
    values = course.pivot(index="position", columns="component", values="value").to_numpy()
    np.testing.assert_allclose(values, first, atol=1e-3)
    table = component_neurons(again, arrays, 0)
    assert {"layer", "neuron", "weight", "z"} <= set(table.columns)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_anti_drift_in_mlp_out_holds_the_down_rows_of_masked_channels(tiny_models, family):
    model = copy.deepcopy(tiny_models[family].model).train().requires_grad_(True)
    arch = detect_architecture(model)
    hidden = arch.hidden_size
    active = torch.ones(hidden)
    active[::2] = 0
    held = (active == 0).nonzero().squeeze(1)
    down = arch.down_module(model, 0)
    out_axis = 1 if arch.transposed_weights else 0
    before_w = down.weight.detach().clone()
    before_b = None if down.bias is None else down.bias.detach().clone()
    other_before = arch.down_module(model, 1).weight.detach().clone()

    report = apply_anti_drift(model, arch, {0: active}, apply_to="base", space="mlp_out")
    expected = [f"{arch.blocks[0].down}.weight"] + (
        [f"{arch.blocks[0].down}.bias"] if before_b is not None else []
    )
    assert report.parametrized == expected
    assert report.frozen_neurons == report.trainable_neurons == hidden // 2
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1
    )
    ids = torch.randint(3, 60, (2, 8), generator=torch.Generator().manual_seed(1))
    for _ in range(4):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    assert drift(model) == 0.0
    after_w = arch.down_module(model, 0).weight.detach()
    assert torch.equal(after_w.index_select(out_axis, held), before_w.index_select(out_axis, held))
    trains = (active != 0).nonzero().squeeze(1)
    assert not torch.equal(
        after_w.index_select(out_axis, trains), before_w.index_select(out_axis, trains)
    )
    if before_b is not None:
        assert torch.equal(arch.down_module(model, 0).bias.detach()[held], before_b[held])
    assert not torch.equal(
        arch.down_module(model, 1).weight.detach(), other_before
    )  # trains freely
    with pytest.raises(SubnetScopeError, match=rf"must be a \({hidden},\) tensor"):
        apply_anti_drift(
            model, arch, {1: torch.ones(arch.neurons_per_layer[1])}, "base", space="mlp_out"
        )


def test_anti_drift_in_mlp_out_holds_lora_b_rows_of_down_at_zero():
    from peft import LoraConfig, get_peft_model

    plain = _tiny_llama()
    arch = detect_architecture(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(plain, LoraConfig(r=4, target_modules=["down_proj", "up_proj"]))
    active = torch.ones(arch.hidden_size)
    active[:10] = 0
    report = apply_anti_drift(model, arch, {0: active}, "lora", space="mlp_out")
    assert report.parametrized == ["model.layers.0.mlp.down_proj.lora_B.default.weight"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(3, 60, (2, 8), generator=torch.Generator().manual_seed(1))
    model.train()
    for _ in range(4):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    b = model.get_base_model().model.layers[0].mlp.down_proj.lora_B["default"].weight.detach()
    assert b[:10].abs().max() == 0 and b[10:].abs().max() > 0


def test_active_neurons_follow_the_space(tiny_models):
    arch = tiny_models["llama"].architecture
    out = Templates(
        components={0: {1: [2, 3]}},
        metadata={"space": "mlp_out", "layers": [0, 1], "hidden_size": 32},
    )
    active = active_neurons(ica_mask(out, [0], "preserve"), arch)
    assert {layer: v.shape[0] for layer, v in active.items()} == {0: 32, 1: 32}
    assert active[1].nonzero().flatten().tolist() == [2, 3] and active[0].sum() == 0


def test_cli_shows_the_space_and_refuses_another(tmp_path, capsys):
    from engine.cli import main

    path = seed_file(tmp_path)
    assert main(["ica", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "space: mlp_out (MLP output channels" in out and "hidden size 32" in out
    assert "None" not in out  # no build details a seed file does not have
    assert main(["ica", "show", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["space"] == "mlp_out"
    assert main(["ica", "show", str(path), "--space", "mlp_neurons"]) == 1
    assert "hold mlp_out channels" in capsys.readouterr().err
