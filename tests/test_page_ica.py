"""AppTest of the ICA page on templates built over a tiny model: browse, toggle, train, build."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.ica import BuildConfig, build_templates
from tests.page_support import open_page, show_view
from tests.tiny import save_tiny_folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ica-page")
    folder = root / "models" / "tiny-llama"
    save_tiny_folder(folder)
    other = root / "models" / "tiny-gpt2"
    save_tiny_folder(other, "gpt2")
    prose, code = root / "prose.txt", root / "code.txt"
    prose.write_text("\n\n".join(f"The {w} walked to the market at dawn." for w in "abcdefghij"))
    code.write_text("\n\n".join(f"for i in range({n}):\n    x += i * {n}" for n in range(10)))
    config = BuildConfig(
        model=str(folder),
        datasets=(str(prose), str(code)),
        samples_per_ds=10,
        components=4,
        percentile=90.0,
        max_length=64,
    )
    templates = build_templates(config, root / "templates" / "templates.json")
    return {"models": root / "models", "model": folder, "other": other, "templates": templates.path}


@pytest.fixture
def page(workspace, tmp_path, monkeypatch) -> AppTest:
    state = {
        # a templates file of one's own is typed in (a link may only name templates jobs built)
        "templates": "A templates file…",
        "templates_typed": str(workspace["templates"]),
        "model_source": str(workspace["model"]),  # never load the demo model
    }
    at = open_page(
        monkeypatch, "ica", cache=tmp_path / "cache", models=workspace["models"], state=state
    )
    [model] = [s for s in at.selectbox if s.label == "Model"]
    assert model.value == str(workspace["model"])
    return at


def test_components_view_shows_counts_tokens_neurons_and_time_course(page):
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["Components"] == "4" and metrics["Layers"] == "0-1"
    tables = [d.value for d in page.dataframe]
    top = next(t for t in tables if "snippet" in t.columns)
    assert len(top) == 25 and top["value"].is_monotonic_decreasing
    neurons = next(t for t in tables if {"layer", "neuron", "weight"} <= set(t.columns))
    assert len(neurons) == 10
    assert len(page.get("vega_lite_chart")) >= 3  # heatmap, dataset means, time course
    [component] = [s for s in page.selectbox if s.label == "Component"]
    component.set_value(2).run()
    assert not page.exception, page.exception


def test_overlapshow_view(page):
    show_view(page, "Overlap")
    pairs = next(d.value for d in page.dataframe if "jaccard" in d.value.columns)
    assert len(pairs) == 6 and pairs["jaccard"].between(0, 1).all()


def test_live_toggles_compare_masked_and_unmasked(page):
    show_view(page, "Live toggles")
    page.multiselect[0].set_value([0, 1])
    page.radio[0].set_value("preserve")
    page.text_input[0].set_value("The cat")
    page.button[0].click().run()  # the form's submit button
    assert not page.exception, page.exception
    ppl = [m for m in page.metric if m.label == "Held-out perplexity"]
    assert len(ppl) == 2 and ppl[0].value != ppl[1].value
    assert len(page.code) >= 2
    assert "neurons off" in " ".join(m.value for m in page.markdown)


def test_templates_for_another_model_and_missing_files_are_one_clear_error(
    page, workspace, tmp_path
):
    show_view(page, "Live toggles")
    [model] = [s for s in page.selectbox if s.label == "Model"]
    model.set_value(str(workspace["other"])).run()
    [error] = page.error
    assert "these templates were built on a Llama model" in error.value and "GPT-2" in error.value
    page.text_input(key="templates_typed").set_value(str(tmp_path / "missing.json")).run()
    [picker] = [s for s in page.selectbox if s.label == "Templates"]
    assert picker.value == "A templates file…"
    assert [e.value for e in page.error] == [f"no ICA templates at '{tmp_path / 'missing.json'}'"]


@pytest.mark.slow
def test_three_way_comparison_runs_and_compares(page):
    from engine.jobs import list_jobs, wait_job

    show_view(page, "Masked SFT")
    assert any("No masked SFT run" in i.value for i in page.info)
    page.number_input(key="ica_sft_steps").set_value(2).run()
    page.button(key="ica_sft_three").click().run()
    assert not page.exception, page.exception
    jobs = list_jobs(kind="train.sft_masked")
    assert len(jobs) == 3
    for job in jobs:
        assert wait_job(job.id, timeout=300).status.state == "succeeded", job.id
    page.run()
    runs = next(d.value for d in page.dataframe if "forgetting" in d.value.columns)
    assert sorted(runs["mask_mode"]) == ["lesion", "none", "preserve"]
    assert runs["group"].nunique() == 1


def test_build_view_offers_a_job(page):
    show_view(page, "Build")
    assert page.button(key="ica_build_job_submit").label == "Build templates"


def test_build_view_offers_both_spaces_and_standardizes_by_default(page):
    show_view(page, "Build")
    space = page.selectbox(key="ica_build_space")
    assert space.options == [
        "mlp_neurons · intermediate neurons",
        "mlp_out · MLP output (seed 001)",
    ]
    assert space.value == "mlp_neurons" and page.checkbox(key="ica_build_std").value is True


def test_a_seed_001_file_opens_in_its_mlp_out_space(page, tmp_path):
    from tests.test_ica_spaces import SEED_GLOBAL_TEMPLATES

    path = tmp_path / "global_templates.json"
    path.write_text(SEED_GLOBAL_TEMPLATES)
    page.text_input(key="templates_typed").set_value(str(path)).run()
    assert not page.exception, page.exception
    captions = " ".join(c.value for c in page.caption)
    assert "Space: **mlp_out**" in captions and "A seed-001 file (global_templates_v1)" in captions
    assert any("Key channels" in m.value for m in page.markdown)
    channels = next(d.value for d in page.dataframe if {"layer", "neuron"} <= set(d.value.columns))
    assert "passport" not in channels.columns  # not intermediate neurons: no passport links
