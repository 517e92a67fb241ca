"""Delta activations (seed 004): the definition, the disk cache, the map, distances, probes, CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.errors import SubnetScopeError
from engine.lora.adapters import load_adapter, load_adapter_set
from engine.lora.deltas import (
    DeltaTable,
    delta_activations,
    delta_distances,
    delta_map,
    mean_last_state,
    model_fingerprint,
)
from engine.lora.live import apply_lora
from engine.lora.probes import PROBE_SETS, probe_texts
from engine.models import wrap_model
from tests.lora_support import save_tiny_adapter

TEXTS = ["a", "Hello there, world!", "x = 1 + 2", "A much longer probe text than the rest.", "ok"]


@pytest.fixture(scope="module")
def adapter_set(llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    folders = [
        save_tiny_adapter(llama.model, root / name, seed=seed, base="tiny-llama")
        for seed, name in enumerate(("alpha", "beta", "gamma"), start=1)
    ]
    return load_adapter_set(folders)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def by_hand(loaded, texts, factors=None) -> torch.Tensor:
    """v(M) one text at a time: no padding, the last position is the last token."""
    states = []
    with torch.no_grad(), apply_lora(loaded, factors):
        for text in texts:
            ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]  # (1, seq)
            hidden = loaded.model(ids, output_hidden_states=True).hidden_states[-1]
            states.append(hidden[0, ids.shape[1] - 1])  # (hidden,)
    return torch.stack(states).mean(dim=0)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mean_last_state_matches_a_text_at_a_time(llama, adapter_set, side) -> None:
    tokenizer = copy.deepcopy(llama.tokenizer)
    tokenizer.padding_side = side
    loaded = wrap_model(llama.model, tokenizer)
    factors = adapter_set.adapters[0].factors
    for f in (None, factors):
        got = mean_last_state(loaded, TEXTS, f, batch_size=2)
        assert got.dtype == torch.float32 and got.shape == (32,)
        torch.testing.assert_close(got, by_hand(loaded, TEXTS, f), atol=1e-5, rtol=0)


def test_delta_is_adapted_minus_base(llama, adapter_set, cache_dir) -> None:
    table = delta_activations(llama, adapter_set, "math", cache=False)
    texts = probe_texts("math")
    base = by_hand(llama, texts)
    np.testing.assert_allclose(table.base, base.numpy(), atol=1e-5)
    for i, adapter in enumerate(adapter_set.adapters):
        expected = by_hand(llama, texts, adapter.factors) - base
        np.testing.assert_allclose(table.vectors[i], expected.numpy(), atol=1e-5)
    assert table.names == list(adapter_set.names) and table.kinds == ["adapter"] * 3
    assert not cache_dir.exists()


def test_cache_returns_identical_vectors_and_a_changed_adapter_invalidates(
    llama, tmp_path, cache_dir
) -> None:
    folder = save_tiny_adapter(llama.model, tmp_path / "one", seed=5, base="tiny-llama")
    adapters = load_adapter_set([folder])
    first = delta_activations(llama, adapters, "code")
    again = delta_activations(llama, adapters, "code")
    assert first.cached == [False] and again.cached == [True]
    assert np.array_equal(first.vectors, again.vectors) and np.array_equal(first.base, again.base)
    assert cache_dir.is_dir()

    save_tiny_adapter(llama.model, folder, seed=6, base="tiny-llama")  # overwrite the folder
    changed = delta_activations(llama, load_adapter_set([folder]), "code")
    assert changed.cached == [False]
    assert not np.allclose(changed.vectors, first.vectors)
    assert np.array_equal(changed.base, first.base)  # the base stays cached
    fresh = delta_activations(llama, load_adapter_set([folder]), "code", cache=False)
    np.testing.assert_allclose(changed.vectors, fresh.vectors, atol=1e-6)


def test_fingerprint_sees_a_change_past_the_sampled_elements(llama) -> None:
    """A row-sparse edit in a late row (what a neuron edit or masked update makes) must not
    reuse the unedited model's cached state."""
    edited = wrap_model(copy.deepcopy(llama.model), llama.tokenizer)
    weight = edited.model.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        weight[-1, -1] += 1e-3
    assert model_fingerprint(edited) != model_fingerprint(llama)


def test_truncated_probes_are_counted(llama, adapter_set, tmp_path, cache_dir) -> None:
    probes = tmp_path / "long.txt"
    probes.write_text("short\n" + "word " * 20 + "\n")
    table = delta_activations(llama, adapter_set, str(probes), cache=False, max_length=16)
    assert table.truncated == 1 and table.to_json()["truncated"] == 1
    assert delta_activations(llama, adapter_set, str(probes), cache=False).truncated == 0


def test_blends_are_live_and_map_onto_their_adapter(llama, adapter_set, cache_dir) -> None:
    beta = adapter_set.adapters[1].factors
    table = delta_activations(llama, adapter_set, "prose", blends={"blend": beta})
    assert table.kinds == ["adapter", "adapter", "adapter", "blend"]
    np.testing.assert_allclose(table.delta("blend"), table.delta("beta"), atol=1e-5)
    points = delta_map(table).set_index("name")
    assert list(points.columns) == ["kind", "x", "y", "norm"]
    assert list(points.index) == ["base", "alpha", "beta", "gamma", "blend"]
    np.testing.assert_allclose(
        points.loc["blend", ["x", "y"]].to_numpy(float),
        points.loc["beta", ["x", "y"]].to_numpy(float),
        atol=1e-4,
    )
    assert (
        points.loc["base", "norm"] == 0 and points.loc["base", "x"] == points.loc["base", "y"] == 0
    )
    assert 0 < sum(delta_map(table).attrs["explained"]) <= 1 + 1e-9
    with pytest.raises(SubnetScopeError, match="already an adapter"):
        delta_activations(llama, adapter_set, "prose", blends={"beta": beta})


def _table(vectors, kinds=None) -> DeltaTable:
    vectors = np.asarray(vectors, dtype=np.float32)
    names = [f"m{i}" for i in range(len(vectors))]
    kinds = kinds or ["adapter"] * len(vectors)
    return DeltaTable(names, kinds, vectors, np.zeros(vectors.shape[1], np.float32), "generic")


def test_map_with_one_or_two_adapters() -> None:
    one = delta_map(_table([[3.0, 4.0, 0.0]]))
    assert one.shape == (2, 5)
    assert np.allclose(one["y"], 0) and one.set_index("name").loc["m0", "x"] > 0
    assert np.isclose(abs(one["x"].diff().iloc[1]), 5.0)  # the true distance, on one axis
    # Two adapters and a blend in their span: the map keeps every distance exactly.
    vectors = [[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0.5, 1.0, 0, 0]]
    two = delta_map(_table(vectors, kinds=["adapter", "adapter", "blend"]))
    xy = two[["x", "y"]].to_numpy()  # base, m0, m1, m2
    full = np.vstack([np.zeros(4), vectors])
    for i in range(4):
        for j in range(4):
            assert np.isclose(np.linalg.norm(xy[i] - xy[j]), np.linalg.norm(full[i] - full[j]))
    zero = delta_map(_table([[0.0, 0.0]]))
    assert np.allclose(zero[["x", "y"]], 0)
    with pytest.raises(SubnetScopeError, match="at least one adapter"):
        delta_map(_table([[1.0, 0.0]], kinds=["blend"]))


def test_distances() -> None:
    v = [[1.0, 0.0], [0.0, 2.0], [2.0, 0.0]]
    frame = delta_distances(_table(v))
    assert list(frame.columns) == ["a", "b", "distance", "cosine"] and len(frame) == 3
    row = frame.set_index(["a", "b"])
    assert np.isclose(row.loc[("m0", "m1"), "distance"], np.sqrt(5))
    assert np.isclose(row.loc[("m0", "m1"), "cosine"], 0)
    assert np.isclose(row.loc[("m0", "m2"), "cosine"], 1)


def test_seed_probe_sets_are_llgbm_verbatim() -> None:
    """Transcribed from LLGBM's probes.py (`create_generic_probes`, `create_mixed_probes`)."""
    task, input_text = "Please provide a response.", "Input."
    heads = [
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.",
        "The task described below requires a response that completes the request accurately.",
        "Below is a description of a task. Provide a response that aligns with the requirements.",
        "The following instruction outlines a task. Generate a response that meets the "
        "specified request.",
        "You are given an instruction and input. Write a response that completes the task as "
        "requested.",
    ]
    generic = [
        f"{h}\n\n### Instruction:\n{task} Input:{input_text}\n\n### Response:" for h in heads
    ]
    assert probe_texts("generic") == generic
    assert next(iter(PROBE_SETS)) == "generic"  # the default of the CLI and the page
    assert probe_texts("math")[3] == "Arithmetic:\n15 * 7 = "
    assert probe_texts("commonsense")[1] == "Complete the sentence: The sun rises in the "
    assert probe_texts("mixed") == generic + probe_texts("math") + probe_texts("code")
    assert all(len(probe_texts(n)) == 5 for n in ("math", "code", "commonsense"))


def test_probe_sets_and_files(tmp_path) -> None:
    assert {"generic", "prose", "code", "math", "instructions", "wide"} <= set(PROBE_SETS)
    for name, texts in PROBE_SETS.items():
        assert len(set(texts)) == len(texts) and all(t.strip() for t in texts), name
    assert len(probe_texts("wide")) == 24
    (tmp_path / "p.txt").write_text("first\n\nsecond\n")
    assert probe_texts(str(tmp_path / "p.txt")) == ["first", "second"]
    (tmp_path / "p.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    assert probe_texts(str(tmp_path / "p.jsonl")) == ["one", "two"]
    (tmp_path / "bad.jsonl").write_text('{"txt": "one"}\n')
    with pytest.raises(SubnetScopeError, match="line 1"):
        probe_texts(str(tmp_path / "bad.jsonl"))
    with pytest.raises(SubnetScopeError, match="generic, math, code, commonsense"):
        probe_texts("poetry")
    with pytest.raises(SubnetScopeError, match="not found"):
        probe_texts(str(tmp_path / "missing.txt"))


def test_cli_deltas(tiny_folder, tmp_path, cache_dir, capsys) -> None:
    from engine.models import load_model

    base = tiny_folder("llama")
    model = load_model(base, device="cpu").model
    folders = [
        str(save_tiny_adapter(model, tmp_path / name, seed=seed, base=base))
        for seed, name in ((1, "red"), (2, "blue"))
    ]
    args = ["lora", "deltas", "--base", base, "--adapters", *folders, "--probes", "math"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in out["map"]] == ["base", "red", "blue"]
    assert len(out["distances"]) == 1 and len(out["deltas"]["red"]) == 32
    assert out["rows"][0]["norm"] > 0
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "red" in text and "blue" in text and "cosine" in text
    assert main([*args[:-1], "poetry"]) == 1
    assert "unknown probe set" in capsys.readouterr().err
    assert load_adapter(folders[0]).info.name == "red"


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "gemma3"])
def test_mean_last_state_is_the_full_models_last_hidden_state(tiny_models, family) -> None:
    """v(M) against a brute force: each text alone through the full model, hidden_states[-1] at
    its last token, averaged (Gemma 3n's hidden_states stack AltUp streams: its own test)."""
    from engine.lora.deltas import mean_last_state

    loaded = tiny_models[family]
    texts = ["abc", "hello there", "x"]
    rows = []
    for text in texts:
        ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            out = loaded.model(input_ids=ids, output_hidden_states=True)
        rows.append(out.hidden_states[-1][0, -1].float())
    torch.testing.assert_close(
        mean_last_state(loaded, texts), torch.stack(rows).mean(0), atol=1e-5, rtol=0
    )


def test_mean_last_state_on_gemma3n(tiny_models) -> None:
    from engine.lora.deltas import mean_last_state

    loaded = tiny_models["gemma3n"]
    state = mean_last_state(loaded, ["abc", "hello there"])
    assert state.shape == (loaded.model.config.hidden_size,) and torch.isfinite(state).all()
