"""AppTest of the neuron-pruning page on a SparC3 (Wanda) result over a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.attribution.sparc3 import SparC3Config, run_sparc3
from tests.page_support import open_page, show_view
from tests.tiny import save_tiny_folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pruning-page")
    folder = root / "models" / "tiny-llama"
    save_tiny_folder(folder)
    config = SparC3Config(
        model=str(folder),
        method="wanda",
        general_seeds=(0, 1),
        general_samples=3,
        target_samples=4,
        generate=4,
        max_length=32,
        num_neurons=12,
        eval_nums=(0, 6, 12),
        eval_max_tokens=128,
        causal=True,
    )
    run_sparc3(config, root / "result")
    return {"models": root / "models", "model": folder, "result": root / "result"}


@pytest.fixture
def page(workspace, tmp_path, monkeypatch) -> AppTest:
    at = open_page(
        monkeypatch,
        "pruning",
        cache=tmp_path / "cache",
        models=workspace["models"],
        state={"model_source": str(workspace["model"])},
    )
    assert any("No scores yet" in i.value for i in at.info)
    at.text_input(key="scores_typed").set_value(str(workspace["result"])).run()
    assert not at.exception, at.exception
    return at


def test_candidates_table_and_layer_chart(page):
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["Method"] == "WANDA" and metrics["Selected neurons"] == "12"
    table = next(d.value for d in page.dataframe if "differential" in d.value.columns)
    assert {"layer", "neuron", "R_general", "R_target", "differential"} <= set(table.columns)
    assert table["differential"].is_monotonic_increasing
    assert page.get("vega_lite_chart")


def test_recovery_against_the_causal_set(page):
    table = next(d.value for d in page.dataframe if "recall" in d.value.columns)
    assert table[["method", "truth"]].values.tolist() == [["wanda (none)", "causal"]]
    assert table["precision"].between(0, 1).all()
    # the random tiny model's completions do not depend on 12 neurons: an empty causal set
    assert (table["recall"].isna() == (table["truth_size"] == 0)).all()
    assert any("causal: the shortest list" in c.value for c in page.caption)
    groups = next(d.value for d in page.dataframe if "group" in d.value.columns)
    assert groups["group"].iloc[0] == "all candidates"
    assert len(page.get("vega_lite_chart")) >= 2  # layers and single-ablation effects


def test_live_pruning_side_by_side(page):
    show_view(page, "Live pruning")
    page.slider(key="pruning_n").set_value(12).run()
    page.button(key="pruning_go").click().run()
    assert not page.exception, page.exception
    table = next(d.value for d in page.dataframe if "pruned_toxicity" in d.value.columns)
    assert len(table) == 4 and table["pruned_toxicity"].between(0, 1).all()
    labels = {m.label for m in page.metric}
    assert {"Toxicity, unpruned", "Toxicity, pruned", "Perplexity"} <= labels
    assert any("toxicity by profanity-check" in c.value for c in page.caption)


def test_evaluation_curves_and_export(page, workspace, tmp_path):
    show_view(page, "Evaluation")
    table = next(d.value for d in page.dataframe if "perplexity_change" in d.value.columns)
    assert table["neurons"].tolist() == [0, 6, 12]
    assert page.get("vega_lite_chart")
    show_view(page, "Export")
    page.text_input(key="pruning_export_name").set_value("pruned-test").run()
    page.button(key="pruning_export_go").click().run()
    assert not page.exception, page.exception
    saved = tmp_path / "cache" / "models" / "pruned-test"
    assert (saved / "pruning.json").is_file() and (saved / "config.json").is_file()


ABSOLUTE = "/tmp/subnetscope-abs-export"


@pytest.mark.parametrize("name", ["../../escaped", ABSOLUTE, "..\\x", "a;b", "x\ny", "x" * 65])
def test_export_refuses_a_name_that_is_not_a_plain_folder(page, tmp_path, name):
    show_view(page, "Export")
    page.text_input(key="pruning_export_name").set_value(name).run()
    page.button(key="pruning_export_go").click().run()
    assert not page.exception, page.exception
    assert [e.value for e in page.error] and "is not a valid model folder name" in page.error[
        0
    ].value
    assert not (tmp_path / "cache" / "models").exists()
    assert not (tmp_path / "escaped").exists() and not Path(ABSOLUTE).exists()


def test_compute_view_offers_the_pipeline(page):
    show_view(page, "Compute")
    assert page.button(key="pruning_job_submit").label == "Run SparC3"
