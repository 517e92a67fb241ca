"""AppTest of the Attention page on a tiny Gemma-3 (one local, one global layer): heads and a
head's passport, base vs an adapter, making the global layer local, finished sweep and context
jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.jobs import RESULT, api
from engine.jobs.status_file import update_status
from tests.job_support import hold_local_jobs
from tests.lora_support import make_adapter
from tests.page_support import open_page, show_view
from tests.tiny import char_tokenizer, tiny_config

# Short texts and a small window: the tiny model has 64 positions and a 16-token sliding window.
STATE = {"attention_texts": 2, "attention_max_tokens": 48, "attention_window": 8}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("attention-page")
    folder = root / "models" / "tiny-gemma3"
    config = tiny_config("gemma3")
    config.layer_types = ["sliding_attention", "full_attention"]
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    adapter = make_adapter(root / "adapter", family="gemma3", std=0.5)
    return {"models": root / "models", "model": folder, "adapter": adapter}


def open_attention(workspace, tmp_path, monkeypatch, **state) -> AppTest:
    hold_local_jobs(monkeypatch)
    at = open_page(
        monkeypatch,
        "attention",
        cache=tmp_path / "cache",
        models=workspace["models"],
        state={"model_source": str(workspace["model"]), **STATE, **state},
    )
    return at


def finish(kind: str, params: dict, tables: dict) -> None:
    """A held job of `kind` that 'finished' with these result tables."""
    view = api.submit(kind, params)
    (view.path / RESULT).mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(view.path / RESULT / name)
    update_status(view.path, state="succeeded", fraction=1.0)


def test_heads_layout_heatmap_passport_and_map(workspace, tmp_path, monkeypatch):
    at = open_attention(workspace, tmp_path, monkeypatch)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layers"] == "2" and metrics["Local · global"] == "1 · 1"
    assert metrics["Sliding window"] == "16"
    layout = next(d.value for d in at.dataframe if "rope_theta" in d.value.columns)
    assert list(layout["kind"]) == ["local", "global"]
    assert list(layout["rope_theta"]) == [10_000.0, 1_000_000.0]
    assert len(at.get("vega_lite_chart")) == 2  # the heads heatmap and the attention map
    passport = next(d.value for d in at.dataframe if "statistic" in d.value.columns)
    assert len(passport) == 4 and set(passport["rank (1 = highest)"].str.endswith("of 4")) == {True}
    captions = " ".join(c.value for c in at.caption)
    assert "a local layer already" in captions and "no comparison made yet" in captions
    at.selectbox(key="attention_stat").set_value("sink").run()
    at.number_input(key="attention_layer").set_value(1).run()
    assert not at.exception, at.exception
    assert any("Head L1.H0" in m.value and "global" in m.value for m in at.markdown)
    assert any("Sweep: none finished" in c.value for c in at.caption)


def test_compare_an_adapter_then_the_passport_shows_the_change(workspace, tmp_path, monkeypatch):
    at = open_attention(
        workspace,
        tmp_path,
        monkeypatch,
        attention_tuned="A checkpoint or adapter folder…",
        attention_tuned_typed=str(workspace["adapter"]),
    )
    show_view(at, "Compare")
    diff = next(d.value for d in at.dataframe if "entropy_delta" in d.value.columns)
    assert (
        len(diff) == 4 and diff["rank"].tolist()[0] == 1 and diff["entropy_delta"].abs().gt(0).any()
    )
    assert diff["passport"].str.startswith("attention?layer=").all()
    kinds = next(d.value for d in at.dataframe if "in_top" in d.value.columns)
    assert sorted(kinds["kind"]) == ["global", "local"]
    show_view(at, "Heads")
    assert any("Fine-tuning (adapter adapter − base)" in c.value for c in at.caption)


def test_localize_the_global_layer_changes_perplexity_and_text(workspace, tmp_path, monkeypatch):
    at = open_attention(workspace, tmp_path, monkeypatch)
    show_view(at, "Localize")
    chooser = at.multiselect(key="attention_local")
    assert chooser.options == ["1"]  # only the global layer can be made local
    chooser.set_value([1]).run()
    at.slider(key="attention_local_window").set_value(2).run()
    assert not at.exception, at.exception
    ppl = {m.label: m.value for m in at.metric}
    assert ppl["Perplexity, base"] != ppl["Perplexity, 1 local"]
    at.button(key="attention_generate_go").click().run()
    assert not at.exception, at.exception
    assert len(at.code) == 2
    assert any("No finished sweep" in i.value for i in at.info)
    at.button(key="attention_sweep_job_submit").click().run()
    [job] = api.list_jobs(kind="attention.sweep")
    assert job.spec.params["model"] == str(workspace["model"]) and job.spec.params["windows"] == [
        32
    ]


def test_finished_sweep_and_context_runs_are_drawn(workspace, tmp_path, monkeypatch):
    from engine.attention.config import ContextConfig, SweepConfig
    from engine.attention.context import run_context
    from engine.attention.sweep import run_sweep

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    hold_local_jobs(monkeypatch)
    model = str(workspace["model"])
    sweep = run_sweep(SweepConfig(model=model, texts=2, max_tokens=32, windows=(4, 8)))
    context = run_context(ContextConfig(model=model, lengths=(16, 32), window=8))
    finish("attention.sweep", {"model": model}, {"sweep.parquet": sweep.frame})
    finish(
        "attention.context",
        {"model": model},
        {"context.parquet": context.frame, "timing.parquet": context.timing},
    )
    at = open_attention(workspace, tmp_path, monkeypatch, attention_layer=1)
    assert any("making layer 1 local costs" in c.value for c in at.caption)
    show_view(at, "Localize")
    table = next(d.value for d in at.dataframe if "delta_nll" in d.value.columns)
    assert sorted(table["window"]) == [4, 8]
    show_view(at, "Context length")
    assert len(at.get("vega_lite_chart")) == 1
    at.radio(key="attention_ctx_by").set_value("layer").run()
    assert not at.exception, at.exception
    timing = next(d.value for d in at.dataframe if "seconds" in d.value.columns)
    assert list(timing["length"]) == [16, 32]
