"""Streaming neuron stats and top snippets against a brute-force capture, files, the job."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import SubnetScopeError
from engine.ica import capture_activations
from engine.jobs import api, files, load_kinds
from engine.jobs.status_file import update_status
from engine.neurons.activations import (
    DEMO_ACTIVATIONS,
    ActivationStats,
    compute_activation_stats,
    list_activation_runs,
    load_activation_stats,
    save_activation_stats,
)
from engine.neurons.jobs import DEFAULTS, activations_job
from tests.job_support import hold_local_jobs

# Distinct first characters: a causal model gives equal prefixes equal activations (ties).
# The empty text has no tokens and must be skipped without shifting text indices.
TEXTS = [
    "The cat sat on the mat.",
    "",
    "def f(x):\n    return x + 1",
    "Rain, then sun, then rain again.",
    "42 is the answer?",
]
CONTEXT = 4


def reference(loaded, texts, top_k, batch_size=2):
    acts = capture_activations(
        loaded, texts, range(loaded.architecture.num_layers), batch_size=batch_size, max_length=64
    )
    return acts, acts.matrix.astype(np.float64)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3n"])
def test_stats_and_top_k_match_brute_force(tiny_models, family):
    loaded = tiny_models[family]
    top_k = 4
    result = compute_activation_stats(loaded, TEXTS, top_k=top_k, batch_size=2, context=CONTEXT)
    acts, m = reference(loaded, TEXTS, top_k)
    widths = loaded.architecture.neurons_per_layer
    assert len(result.stats) == sum(widths) and len(result.snippets) == sum(widths) * top_k
    expected = {
        "mean": m.mean(0),
        "std": m.std(0),
        "min": m.min(0),
        "max": m.max(0),
        "mean_abs": np.abs(m).mean(0),
        "positive_share": (m > 0).mean(0),
    }
    for column, values in expected.items():
        np.testing.assert_allclose(result.stats[column], values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.stats["layer"], np.repeat(range(len(widths)), widths))

    order = np.argsort(-m, axis=0, kind="stable")[:top_k]  # (k, features)
    for feature in range(m.shape[1]):
        layer, neuron = (int(x[0]) for x in acts.neuron_of(np.array([feature])))
        _, snips = result.neuron(layer, neuron)
        rows = order[:, feature]
        assert snips["rank"].tolist() == list(range(1, top_k + 1))
        np.testing.assert_allclose(snips["value"], m[rows, feature], rtol=1e-5, atol=1e-6)
        assert snips["text_index"].tolist() == acts.text_index[rows].tolist()
        assert snips["position"].tolist() == acts.position[rows].tolist()
    # The char tokenizer decodes back to the very characters around the hit.
    for hit in result.snippets.head(50).itertuples():
        text, p = TEXTS[hit.text_index], hit.position
        assert (hit.left, hit.token, hit.right) == (
            text[max(0, p - CONTEXT) : p],
            text[p],
            text[p + 1 : p + 4],
        )
    meta = result.meta
    assert meta["tokens"] == acts.num_tokens == sum(len(t) for t in TEXTS)
    assert meta["neurons_per_layer"] == list(widths)
    assert meta["family"] == loaded.architecture.family
    assert meta["texts"] == len(TEXTS) and meta["top_k"] == top_k


def test_batching_and_truncation_do_not_change_the_stats(tiny_models):
    loaded = tiny_models["llama"]
    one = compute_activation_stats(loaded, TEXTS, batch_size=1, max_length=10)
    many = compute_activation_stats(loaded, TEXTS, batch_size=8, max_length=10)
    assert one.meta["tokens"] == 10 * 4
    cols = ["mean", "std", "min", "max", "mean_abs"]
    np.testing.assert_allclose(one.stats[cols], many.stats[cols], rtol=1e-4, atol=1e-5)
    assert (one.snippets["position"] < 10).all()
    # Fewer tokens than top_k: every token is a hit, no padding rows.
    few = compute_activation_stats(loaded, ["ab"], top_k=5)
    assert few.snippets.groupby(["layer", "neuron"]).size().eq(2).all()


def test_neuron_accessor_save_and_load(tiny_models, tmp_path):
    result = compute_activation_stats(tiny_models["llama"], TEXTS, top_k=3)
    row, snips = result.neuron(1, 7)
    layer1 = result.stats[result.stats["layer"] == 1]
    ranks = layer1["mean_abs"].rank(ascending=False, method="min")
    expected_rank = int(ranks[layer1["neuron"] == 7].iloc[0])
    assert row["mean_abs_rank_in_layer"] == expected_rank
    assert (row["layer"], row["neuron"]) == (1, 7) and isinstance(row["neuron"], int)
    assert len(snips) == 3
    loudest = int(layer1.loc[layer1["mean_abs"].idxmax(), "neuron"])
    assert result.neuron(1, loudest)[0]["mean_abs_rank_in_layer"] == 1
    with pytest.raises(SubnetScopeError, match="no neuron L1.999"):
        result.neuron(1, 999)

    folder = save_activation_stats(result, tmp_path / "stats")
    assert result.path == folder
    back = load_activation_stats(folder)
    assert isinstance(back, ActivationStats) and back.path == folder
    assert back.meta == json.loads(json.dumps(result.meta))
    assert back.stats.equals(result.stats) and back.snippets.equals(result.snippets)
    assert back.neuron(1, 7)[0] == row


def test_clear_errors(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    with pytest.raises(SubnetScopeError, match="no tokens"):
        compute_activation_stats(loaded, ["", ""])
    with pytest.raises(SubnetScopeError, match="top_k must be ≥ 1"):
        compute_activation_stats(loaded, TEXTS, top_k=0)
    with pytest.raises(SubnetScopeError, match="no activation statistics"):
        load_activation_stats(tmp_path)
    with pytest.raises(SubnetScopeError, match="unknown option layers"):
        activations_job({"layers": "all"}, None)


def test_job_writes_loadable_stats(ctx, tiny_folder):
    folder = tiny_folder("gpt2")
    summary = activations_job({"model": folder, "samples": 6, "max_length": 16, "top_k": 2}, ctx)
    stats = load_activation_stats(ctx.job_dir)  # a job folder finds its result folder
    assert stats.path == ctx.result_dir
    assert summary["tokens"] == stats.meta["tokens"] and summary["neurons"] == len(stats.stats)
    assert stats.meta["dataset"] == "demo-general" and stats.meta["samples"] == 6
    assert stats.meta["model"] == folder and stats.meta["texts"] == 6
    assert len(stats.snippets) == 2 * len(stats.stats)
    events = files.read_events(ctx.job_dir / files.EVENTS)
    assert any(e["type"] == "metric" and e["name"] == "tokens" for e in events)


def test_kind_demo_part_and_run_listing(tiny_models, tmp_path, monkeypatch):
    from engine.demo.parts import load_parts

    kind = load_kinds()["neurons.activations"]
    assert kind.result_page == "passport" and kind.defaults == DEFAULTS
    part = load_parts()["neuron-activations"]
    assert part.job_kind == "neurons.activations" and part.params == DEMO_ACTIVATIONS

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    hold_local_jobs(monkeypatch)
    result = compute_activation_stats(tiny_models["llama"], TEXTS[:1], top_k=1)

    def finished(params: dict, state: str = "succeeded") -> str:
        view = api.submit("neurons.activations", params)
        save_activation_stats(result, view.path / files.RESULT)
        update_status(view.path, state=state, fraction=1.0)
        return view.id

    assert list_activation_runs() == []
    demo = finished({})
    other = finished({"model": "/some/folder", "samples": 10})
    finished({"samples": 3}, state="failed")
    runs = list_activation_runs()
    assert [r.job_id for r in runs] == [demo, other]
    assert runs[0].is_demo and runs[0].label == "Demo activations · demo-general · 200 texts"
    assert runs[1].model == "/some/folder" and other in runs[1].label and not runs[1].is_demo
    assert load_activation_stats(runs[0].path).meta["tokens"] == result.meta["tokens"]


@pytest.mark.slow
def test_demo_model_snippets_keep_their_spaces(demo_model):
    texts = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France."]
    result = compute_activation_stats(demo_model, texts, top_k=3)
    assert len(result.stats) == sum(demo_model.architecture.neurons_per_layer)
    for hit in result.snippets.sample(200, random_state=0).itertuples():
        text = texts[hit.text_index]
        assert hit.left + hit.token in text and (hit.token + hit.right) in text
