"""AppTest of the Runs page over real local jobs, and of the job panel on the Model page."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.demo import load_parts
from engine.jobs import cancel_job, get_job, list_jobs, submit, wait_job
from tests.page_support import APP

RUNS = "../pages/runs.py"  # relative to the app's folder, as AppTest.switch_page wants


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def jobs(cache) -> dict[str, str]:
    """One job of each final state, in this module's own cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(cache))
        done = submit("diagnostics.sleep", {"seconds": 0.3, "steps": 3})
        failed = submit("diagnostics.fail", {"message": "broken on purpose"})
        stopped = submit("diagnostics.sleep", {"seconds": 60, "steps": 60})
        wait_until(lambda: get_job(stopped.id).status.state == "running")
        cancel_job(stopped.id, wait=True)
        for view in (done, failed):
            wait_job(view.id, timeout=60)
    return {"succeeded": done.id, "failed": failed.id, "cancelled": stopped.id}


@pytest.fixture
def runs_page(jobs, cache, monkeypatch) -> AppTest:
    """The Runs page, not yet run: set query params or widgets, then `run`."""
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(cache))
    at = AppTest.from_file(APP, default_timeout=60)
    # Before its first run AppTest names a page by its file name, which is Runs' url_path too:
    # the default (Home) page is skipped.
    return at.switch_page(RUNS)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def has_cancel_button(at: AppTest) -> bool:
    return any(b.key == "runs_detail_cancel" for b in at.button)


def select_job(at: AppTest, job_id: str) -> AppTest:
    at.selectbox(key="runs_job").set_value(job_id)
    return run(at)


def test_table_lists_every_job_with_its_state(runs_page, jobs) -> None:
    at = run(runs_page)
    assert at.title[0].value == "Runs"
    table = at.dataframe[0].value
    states = dict(zip(table["id"], table["state"], strict=True))
    assert {job_id: states.get(job_id) for job_id in jobs.values()} == {
        job_id: state for state, job_id in jobs.items()
    }
    assert table.loc[table["state"] == "succeeded", "progress"].item() == 1.0
    assert not at.error


def test_state_filter_narrows_the_table(runs_page, jobs) -> None:
    at = run(runs_page)
    at.pills(key="runs_states").set_value(["failed", "cancelled"])
    run(at)
    table = at.dataframe[0].value
    assert set(table["state"]) == {"failed", "cancelled"}
    assert {jobs["failed"], jobs["cancelled"]} <= set(table["id"])


def test_a_succeeded_job_shows_params_result_metrics_and_log(runs_page, jobs) -> None:
    at = select_job(run(runs_page), jobs["succeeded"])
    assert at.query_params["job"] == jobs["succeeded"]
    assert any('"seconds": 0.3' in j.value for j in at.json)
    assert {m.label: m.value for m in at.metric} == {"steps": "3"}
    assert len(at.get("vega_lite_chart")) == 3  # metrics, progress and resources used
    assert "succeeded" in at.code[0].value
    assert not has_cancel_button(at)


def test_a_failed_job_shows_its_error_and_traceback(runs_page, jobs) -> None:
    at = select_job(run(runs_page), jobs["failed"])
    assert [e.value for e in at.error] == ["broken on purpose"]
    assert "Traceback" in at.code[0].value


def test_a_cancelled_job_says_so(runs_page, jobs) -> None:
    at = select_job(run(runs_page), jobs["cancelled"])
    assert any("cancel" in w.value for w in at.warning)


def test_job_query_param_preselects_a_run(runs_page, jobs) -> None:
    runs_page.query_params["job"] = jobs["failed"][:-2]  # a unique prefix is enough
    at = run(runs_page)
    assert at.selectbox(key="runs_job").value == jobs["failed"]


def test_unknown_job_query_param_warns(runs_page) -> None:
    runs_page.query_params["job"] = "no-such-job"
    at = run(runs_page)
    assert any("no job 'no-such-job'" in w.value for w in at.warning)


def test_new_run_submits_a_job_and_selects_it(runs_page, jobs) -> None:
    at = run(runs_page)
    at.selectbox(key="new_kind").set_value("diagnostics.sleep")
    run(at)
    params = at.text_area(key="new_params_diagnostics.sleep")
    assert '"steps": 10' in params.value  # prefilled from the kind's defaults
    params.set_value('{"seconds": 0.2, "steps": 2}')
    at.button(key="new_submit").click()
    run(at)
    new = at.selectbox(key="runs_job").value
    assert new not in jobs.values()
    assert any(new in s.value for s in at.success)
    done = wait_job(new, timeout=60)
    assert done.status.state == "succeeded"
    assert done.spec.params == {"seconds": 0.2, "steps": 2}


def test_new_run_with_bad_json_shows_one_error(runs_page, jobs) -> None:
    at = run(runs_page)
    before = len(list_jobs())
    at.selectbox(key="new_kind").set_value("diagnostics.fail")
    run(at)
    at.text_area(key="new_params_diagnostics.fail").set_value('{"message": ')
    at.button(key="new_submit").click()
    run(at)
    assert len(at.error) == 1 and "not valid JSON" in at.error[0].value
    assert len(list_jobs()) == before


def test_cancel_button_stops_an_active_job(runs_page) -> None:
    view = submit("diagnostics.sleep", {"seconds": 60, "steps": 60})
    wait_until(lambda: get_job(view.id).status.state == "running")
    runs_page.query_params["job"] = view.id
    at = run(runs_page)
    at.button(key="runs_detail_cancel").click()
    run(at)
    assert wait_job(view.id, timeout=30).status.state == "cancelled"
    run(at)
    assert not has_cancel_button(at)


@pytest.mark.slow
def test_model_page_measures_perplexity_through_the_job_panel(tmp_path, monkeypatch) -> None:
    from engine.models.demo import demo_model_dir, ensure_demo_model

    real_demo = ensure_demo_model()
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    # Jobs land in the temporary cache; the demo model is the checkout's, linked in read-only.
    demo_model_dir().parent.mkdir(parents=True)
    demo_model_dir().symlink_to(real_demo, target_is_directory=True)
    at = AppTest.from_file(APP, default_timeout=180)
    run(at)  # Home, the default page
    at.switch_page("../pages/model.py")
    run(at)
    at.number_input(key="ppl_max_tokens").set_value(64)
    at.number_input(key="ppl_stride").set_value(32)
    at.button(key="ppl_job_submit").click()
    run(at)
    job_id = at.session_state["ppl_job"]
    assert get_job(job_id).spec.params["max_tokens"] == 64
    done = wait_job(job_id, timeout=170)
    assert done.status.state == "succeeded", done.status.message
    run(at)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["perplexity"]) > 1
    assert "tokens" in metrics


def test_sidebar_shows_the_demo_workspace(runs_page) -> None:
    at = run(runs_page)
    [panel] = [e for e in at.sidebar.expander if e.label.startswith("Demo workspace")]
    # In this module's fresh cache no demo part has been built (the demo model is not here).
    assert panel.label.endswith(f"0/{len(load_parts())} ready")
    assert any("SFT run on the demo model" in m.value for m in panel.markdown)


def test_the_queue_shows_its_load_and_saves_its_settings(runs_page, cache) -> None:
    at = run(runs_page)
    assert any("Local queue:" in c.value and "slots busy" in c.value for c in at.caption)
    at.number_input(key="queue_slots").set_value(3)
    at.number_input(key="queue_memory").set_value(6.0)
    at.button(key="queue_save").click()
    run(at)
    assert any("3 jobs at once, 6 GB" in s.value for s in at.success)
    assert '"max_jobs": 3' in (cache / "queue.json").read_text()


def test_a_path_in_the_job_param_is_refused_and_touches_nothing(runs_page, tmp_path) -> None:
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "status.json").write_text('{"state": "running", "pid": 1}')
    before = (planted / "status.json").read_bytes()
    for value in (str(planted), "../../planted", "..", "x/../../y"):
        at = AppTest.from_file(APP, default_timeout=60).switch_page(RUNS)
        at.query_params["job"] = value
        run(at)
        assert any("is not a job id" in w.value for w in at.warning), value
    assert (planted / "status.json").read_bytes() == before
    assert sorted(p.name for p in planted.iterdir()) == ["status.json"]


def test_a_damaged_job_folder_is_its_own_row(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    good = submit("diagnostics.sleep", {"seconds": 0.1, "steps": 1})
    wait_job(good.id, timeout=60)
    bad = tmp_path / "jobs" / "20260101-000000-broken-000000"
    bad.mkdir()
    (bad / "spec.json").write_text('{"id": "x", "kind": "k", "params": {}, "surprise": 1}')
    (bad / "status.json").write_bytes(b"\xff\xfe not utf-8")
    at = run(AppTest.from_file(APP, default_timeout=60).switch_page(RUNS))
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[good.id, "state"] == "succeeded"
    assert table.loc[bad.name, "state"] == "failed"
    assert "unknown keys: surprise" in table.loc[bad.name, "message"]


def test_sidebar_shows_a_demo_part_waiting_in_the_queue(tmp_path, monkeypatch) -> None:
    from engine.demo import build_demo

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    monkeypatch.setenv("SUBNETSCOPE_MAX_JOBS", "1")
    busy = submit("diagnostics.sleep", {"seconds": 120, "steps": 120})
    [waiting] = build_demo("baseline-perplexity")
    try:
        at = run(AppTest.from_file(APP, default_timeout=60).switch_page(RUNS))
        [panel] = [e for e in at.sidebar.expander if e.label.startswith("Demo workspace")]
        lines = [m.value for m in panel.markdown if "perplexity" in m.value]
        assert lines and "building (1st in the local queue)" in lines[0]
    finally:
        cancel_job(waiting.id)
        cancel_job(busy.id, wait=True)


def test_a_training_job_shows_its_diagnostics(runs_page, cache) -> None:
    import pandas as pd

    from engine.jobs import RESULT
    from engine.training.diagnostics import MEMORIZATION_COLUMNS

    job = submit("diagnostics.sleep", {"seconds": 0.1, "steps": 1})
    wait_job(job.id, timeout=60)
    result = job.path / RESULT
    layers = pd.DataFrame(
        [
            {
                "step": s,
                "layer": layer,
                "module": f"model.layers.{layer}.mlp",
                "kind": k,
                "value": v,
            }
            for s in (2, 4)
            for layer in (0, 1)
            for k, v in (("grad_norm", 0.5 + layer), ("act_rms", 3.0))
        ]
    )
    layers.to_parquet(result / "diagnostics.parquet")
    memo = pd.DataFrame(
        [
            {c: 0.0 for c in MEMORIZATION_COLUMNS}
            | {"step": s, "train_loss": 3.0 - s / 10, "heldout_loss": 3.2, "members": 4}
            | {"nonmembers": 4, "advantage": 0.25, "chance_advantage": 0.5, "auc": 0.6}
            for s in (0, 4)
        ]
    )
    memo.to_parquet(result / "memorization.parquet")
    at = select_job(run(runs_page), job.id)
    assert any("Diagnostics" in m.value for m in at.markdown)
    assert at.selectbox(key=f"runs_diag_kind_{job.id}").value == "grad_norm"
    assert any("attack advantage 0.25" in c.value for c in at.caption)
