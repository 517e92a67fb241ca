"""Views that follow the data: one AppTest session, whose caches are never cleared, sees a SparC3
run and ICA templates appear as their jobs finish — on the pruning and ICA pages, in the passport's
sections and among its overlap sets (issue 15: the passport kept saying "No SparC3 run")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard.stamps import FOLLOW_S
from engine.jobs import api, files
from engine.jobs.status_file import update_status
from tests.artifact_support import quick_sparc3, quick_templates, write_prose
from tests.job_support import hold_local_jobs
from tests.page_support import APP, show_view
from tests.tiny import save_tiny_folder

STAMP_TTL_S = 2.0  # dashboard.stamps reads the job folders at most this often


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> dict[str, Path]:
    model = tmp_path / "models" / "tiny-llama"
    save_tiny_folder(model)
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SUBNETSCOPE_MODEL_ROOTS", str(tmp_path / "models"))
    hold_local_jobs(monkeypatch)
    st.cache_data.clear()  # once, before the session: nothing is cleared after this
    return {"model": model, "prose": write_prose(tmp_path)}


def finish(kind: str, params: dict, make) -> None:
    """A job of `kind` that runs (its result folder filled by `make`) and succeeds."""
    view = api.submit(kind, params)
    update_status(view.path, state="running", fraction=0.0)
    make(view.path / files.RESULT)
    update_status(view.path, state="succeeded", fraction=1.0)


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def test_one_session_sees_finished_jobs_without_clearing_caches(workspace) -> None:
    model = str(workspace["model"])
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["model_source"] = model
    at.session_state["passport_layer"], at.session_state["passport_neuron"] = 1, 5
    at.run()

    at.switch_page("../pages/pruning.py").run()
    assert any("No scores yet" in i.value for i in at.info)
    at.switch_page("../pages/ica.py").run()
    assert any("No templates yet" in i.value for i in at.info)
    at.switch_page("../pages/passport.py").run()
    assert not at.exception, at.exception
    assert "No SparC3 run on this layout yet." in captions(at)
    assert "No ICA templates on this layout yet." in captions(at)
    show_view(at, "Overlaps")
    assert not [o for o in at.multiselect(key=_sets_key(at)).options if o.startswith("pruning:")]

    pruning = {"model": model, "method": "wanda", "num_neurons": 8}
    finish("prune.sparc3", pruning, lambda result: quick_sparc3(model, result))
    ica = {"model": model, "components": 3, "datasets": [str(workspace["prose"])]}
    finish(
        "ica.build_templates",
        ica,
        lambda result: quick_templates(model, workspace["prose"], result / "templates.json"),
    )
    time.sleep(STAMP_TTL_S + 0.2)  # what a user waits at most; a page follows within FOLLOW_S
    assert STAMP_TTL_S < FOLLOW_S

    at.run()  # the overlaps view, as a rerun finds it
    assert not at.exception, at.exception
    options = at.multiselect(key=_sets_key(at)).options
    assert any(o.startswith("pruning:") for o in options), options
    assert any(o.startswith("ica:") for o in options), options
    show_view(at, "Passport")
    assert "No SparC3 run on this layout yet." not in captions(at)
    assert "No ICA templates on this layout yet." not in captions(at)
    assert any("differential" in d.value.columns for d in at.dataframe)

    at.switch_page("../pages/pruning.py").run()
    assert not at.exception, at.exception
    assert not any("No scores yet" in i.value for i in at.info)
    assert {m.label for m in at.metric} >= {"Method", "Selected neurons"}
    at.switch_page("../pages/ica.py").run()
    assert not at.exception, at.exception
    assert not any("No templates yet" in i.value for i in at.info)
    assert {m.label: m.value for m in at.metric}["Components"] == "3"


def _sets_key(at: AppTest) -> str:
    """The overlap view's set picker is keyed by its options (a new set joins the selection)."""
    return next(m.key for m in at.multiselect if m.label == "Sets")
