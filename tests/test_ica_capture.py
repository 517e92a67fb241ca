"""Capture, the build pipeline, time courses and the CLI on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.errors import SubnetScopeError
from engine.ica import BuildConfig, build_templates, capture_activations, ica_mask, load_arrays
from engine.ica.explore import component_neurons, dataset_means, time_course, top_tokens
from engine.ica.masks import apply_space_mask

TEXTS = ["The cat sat on the mat.", "def f(x):\n    return x + 1", "Rain, then sun."]


def manual_inputs(loaded, text: str, layer: int) -> torch.Tensor:
    """The down projection's input for one text, by a plain hook (the reference)."""
    seen = []
    module = loaded.architecture.down_module(loaded.model, layer)
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0][0].clone()))
    try:
        with torch.inference_mode():
            loaded.model(**loaded.tokenizer(text, return_tensors="pt"))
    finally:
        handle.remove()
    return seen[0]  # (seq, neurons)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3n"])
def test_capture_matches_a_plain_hook(tiny_models, family):
    loaded = tiny_models[family]
    layers = (0, 1)
    acts = capture_activations(loaded, TEXTS, layers, batch_size=2)
    widths = loaded.architecture.neurons_per_layer
    assert acts.matrix.shape == (acts.num_tokens, widths[0] + widths[1])
    assert acts.num_tokens == sum(len(t) for t in TEXTS)  # the char tokenizer adds no specials
    for i, text in enumerate(TEXTS):
        rows = acts.matrix[acts.text_index == i]
        for slot, layer in enumerate(layers):
            lo, hi = acts.offsets[slot], acts.offsets[slot + 1]
            np.testing.assert_allclose(
                rows[:, lo:hi], manual_inputs(loaded, text, layer), atol=1e-5
            )
    assert acts.position[acts.text_index == 1].tolist() == list(range(len(TEXTS[1])))
    layer, neuron = acts.neuron_of(np.array([0, widths[0] + 3]))
    assert layer.tolist() == [0, 1] and neuron.tolist() == [0, 3]


def test_capture_spills_to_disk_over_the_budget(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    in_ram = capture_activations(loaded, TEXTS, (0, 1))
    spilled = capture_activations(loaded, TEXTS, (0, 1), memory_budget=1000, spill_dir=tmp_path)
    assert isinstance(spilled.matrix, np.memmap) and spilled.spilled_to.is_file()
    np.testing.assert_array_equal(np.asarray(spilled.matrix), in_ram.matrix)
    with pytest.raises(SubnetScopeError, match="over the memory budget"):
        capture_activations(loaded, TEXTS, (0, 1), memory_budget=1000)


def test_capture_sees_masks_and_nothing_after_the_call(tiny_models):
    loaded = tiny_models["llama"]
    before = capture_activations(loaded, TEXTS, (0, 1)).matrix
    width = loaded.architecture.neurons_per_layer[0]
    from engine.ica import Templates

    templates = Templates(
        components={0: {0: [2, 7], 1: [4]}, 1: {1: [0, 1]}}, metadata={"layers": [0, 1]}
    )
    lesion = ica_mask(templates, [0], "lesion")
    with apply_space_mask(loaded, lesion):
        lesioned = capture_activations(loaded, TEXTS, (0, 1)).matrix
    changed = np.flatnonzero(np.any(lesioned[:, :width] != before[:, :width], axis=0))
    assert changed.tolist() == [2, 7]  # layer 0: exactly the lesioned neurons, zeroed
    assert np.all(lesioned[:, [2, 7]] == 0) and np.all(lesioned[:, width + 4] == 0)
    with apply_space_mask(loaded, ica_mask(templates, [1], "preserve")):
        preserved = capture_activations(loaded, TEXTS, (0, 1)).matrix
    alive = np.flatnonzero(np.any(preserved != 0, axis=0))
    assert alive.tolist() == [width + 0, width + 1]
    after = capture_activations(loaded, TEXTS, (0, 1)).matrix
    np.testing.assert_array_equal(after, before)  # nothing left behind once the calls end


@pytest.fixture(scope="module")
def built(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ica")
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
    )
    templates = build_templates(config, folder / "t.json", loaded=tiny_models["llama"])
    return templates, load_arrays(templates.path)


def test_build_writes_templates_and_arrays(built, tiny_models):
    templates, arrays = built
    meta = templates.metadata
    assert templates.component_ids == [0, 1, 2, 3]
    assert meta["family"] == "Llama" and meta["layers"] == [0, 1]
    assert meta["texts_per_dataset"] == dict.fromkeys(meta["datasets"], 10)
    assert meta["pca_dims"] is None  # 96 neurons: narrower than the automatic PCA size
    # percentile 90 of 96 neurons → the top 10 % per component
    assert all(templates.size(c) == 10 for c in templates.component_ids)
    assert arrays.sources.shape == (meta["tokens"], 4)
    assert arrays.mixing.shape == (96, 4)
    templates.validate(tiny_models["llama"].architecture)
    assert not list(templates.path.parent.glob(".*spill"))


def test_time_course_reproduces_the_captured_sources(built, tiny_models):
    templates, arrays = built
    text = arrays.texts[3]
    course = time_course(tiny_models["llama"], templates, arrays, text)
    stored = arrays.sources[arrays.text_index == 3]
    values = course.pivot(index="position", columns="component", values="value").to_numpy()
    np.testing.assert_allclose(values, stored, atol=1e-3)
    with pytest.raises(SubnetScopeError, match="built on a Llama model"):
        time_course(tiny_models["gpt2"], templates, arrays, text)


def test_top_tokens_neurons_and_dataset_means(built, tiny_models):
    templates, arrays = built
    top = top_tokens(arrays, tiny_models["llama"].tokenizer, 0, n=5)
    assert len(top) == 5 and top["value"].is_monotonic_decreasing
    assert all("[[" in s and "]]" in s for s in top["snippet"])
    assert top["value"].iloc[0] == pytest.approx(arrays.sources[:, 0].max())
    neurons = component_neurons(templates, arrays, 1)
    assert len(neurons) == 10 and neurons["weight"].abs().is_monotonic_decreasing
    means = dataset_means(arrays)
    assert set(means["dataset"]) == set(arrays.datasets) and len(means) == 8


def test_cli_builds_and_shows(tmp_path, capsys, monkeypatch, tiny_models, built):
    templates, _ = built
    assert main(["ica", "show", str(templates.path)]) == 0
    out = capsys.readouterr().out
    assert "4 components" in out and "Llama" in out
    assert main(["ica", "show", str(templates.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["components"]["0"]["neurons"] == 10
    assert main(["ica", "show", str(tmp_path / "none.json")]) == 1
    assert "no ICA templates at" in capsys.readouterr().err
    assert main(["ica", "build-templates", "demo", "x.txt", "--out", str(tmp_path / "t.txt")]) == 1
    assert "must end in .json" in capsys.readouterr().err
