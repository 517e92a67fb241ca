"""AppTests of the Neuron passport page (a SparC3 run on a tiny model) and of the Home page."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine.jobs import api, files
from engine.jobs.status_file import update_status
from tests.artifact_support import quick_sparc3
from tests.job_support import hold_local_jobs
from tests.page_support import APP, show_view
from tests.tiny import save_tiny_folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("passport-page")
    folder = root / "models" / "tiny-llama"
    save_tiny_folder(folder)
    return {"root": root, "models": root / "models", "model": folder}


@pytest.fixture
def cache(workspace, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SUBNETSCOPE_MODEL_ROOTS", str(workspace["models"]))
    hold_local_jobs(monkeypatch)
    view = api.submit("prune.sparc3", {"model": str(workspace["model"]), "method": "wanda"})
    quick_sparc3(workspace["model"], view.path / files.RESULT)
    update_status(view.path, state="succeeded", fraction=1.0)
    st.cache_data.clear()
    return tmp_path / "cache"


def open_passport(workspace, params: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["model_source"] = str(workspace["model"])
    at.run()
    if params:
        at.query_params.update(params)
    at.switch_page("../pages/passport.py").run()
    assert not at.exception, at.exception
    return at


def test_passport_of_the_top_candidate(workspace, cache) -> None:
    from engine.attribution.results import list_runs, load_result

    top = load_result(list_runs()[0].path).candidates.sort_values("rank").iloc[0]
    layer, neuron = int(top["layer"]), int(top["neuron"])
    at = open_passport(
        workspace, {"model": str(workspace["model"]), "layer": str(layer), "neuron": str(neuron)}
    )
    assert at.number_input(key="passport_layer").value == layer
    assert at.number_input(key="passport_neuron").value == neuron
    of = len(load_result(list_runs()[0].path).candidates)
    assert any(f"Pruning candidate #1 of {of}" in m.value for m in at.markdown)
    table = next(d.value for d in at.dataframe if "differential" in d.value.columns)
    assert table.iloc[0]["rank"] == 1
    # what no view has computed yet is listed with a button that starts its job
    labels = [b.label for b in at.button]
    assert {"Run ica.build_templates", "Run train.lora", "Run neurons.activations"} <= set(labels)
    next(b for b in at.button if b.label == "Run neurons.activations").click().run()
    assert not at.exception, at.exception
    [job] = api.list_jobs(kind="neurons.activations")
    assert job.spec.params["model"] == str(workspace["model"])


def test_picking_another_neuron_and_an_out_of_range_link(workspace, cache) -> None:
    at = open_passport(workspace, {"layer": "99", "neuron": "0"})
    assert at.number_input(key="passport_layer").value == 1  # clamped to the last layer
    at.number_input(key="passport_neuron").set_value(3).run()
    assert not at.exception, at.exception
    assert any(h.value == "Neuron L1.3" for h in at.subheader)


def test_overlap_matrix_with_a_user_list(workspace, cache) -> None:
    from engine.attribution.results import list_runs, load_result

    cands = load_result(list_runs()[0].path).candidates.sort_values("rank").head(3)
    at = open_passport(workspace)
    show_view(at, "Overlaps")
    assert any("Pick two sets" in i.value for i in at.info)  # one set so far
    listed = ", ".join(f"{r.layer}.{r.neuron}" for r in cands.itertuples())
    at.text_area(key="passport_user_list").set_value(listed).run()
    assert not at.exception, at.exception
    pairs = next(d.value for d in at.dataframe if "p_layered" in d.value.columns)
    [row] = pairs.to_dict(orient="records")
    assert {row["a"], row["b"]} == {"pruning:100", "list:yours"}
    assert row["shared"] == 3 and row["p_value"] == 1.0  # wanda ranks all 96: chance
    at.slider(key="passport_top").set_value(10).run()  # the top 10 only
    pairs = next(d.value for d in at.dataframe if "p_layered" in d.value.columns)
    [row] = pairs.to_dict(orient="records")
    assert {row["a"], row["b"]} == {"pruning:10", "list:yours"}
    assert row["shared"] == 3 and row["p_value"] < 0.01 and row["q_layered"] < 0.05
    shorter = ", ".join(f"{r.layer}.{r.neuron}" for r in cands.head(2).itertuples())
    at.text_area(key="passport_user_list").set_value(shorter).run()  # an edited list: recomputed
    pairs = next(d.value for d in at.dataframe if "p_layered" in d.value.columns)
    assert pairs.iloc[0]["shared"] == 2 and pairs.iloc[0]["size_b"] + pairs.iloc[0]["size_a"] == 12
    assert at.get("vega_lite_chart")


def test_a_bad_user_list_is_one_error(workspace, cache) -> None:
    at = open_passport(workspace)
    show_view(at, "Overlaps")
    at.text_area(key="passport_user_list").set_value("layer twelve").run()
    assert [e.value for e in at.error] == [
        "'layer twelve' is not a neuron: write layer.neuron, e.g. 12.345"
    ]


def test_home_lists_every_view_with_its_question(tmp_path, monkeypatch) -> None:
    from dashboard.navigation import all_pages

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "SubnetScope"
    links = {link.label for link in at.get("page_link")}
    assert {p.title for p in all_pages() if not p.default} <= links
    captions = {c.value for c in at.caption}
    assert all(p.question in captions for p in all_pages() if not p.default)
    text = " ".join(m.value for m in at.markdown)
    assert "not built yet" in text  # an empty cache: the demo parts are listed, none ready
