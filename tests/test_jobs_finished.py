"""The listing every view's picker shares: succeeded jobs holding their result, demo first."""

from __future__ import annotations

import time

from engine.jobs import api, files
from engine.jobs.finished import finished_results
from engine.jobs.status_file import update_status
from tests.job_support import hold_local_jobs


def test_demo_first_then_newest_and_only_finished_results(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    hold_local_jobs(monkeypatch)
    demo_params = {"seconds": 1, "steps": 1}

    def job(params: dict, state: str = "succeeded", holds: bool = True) -> str:
        view = api.submit("diagnostics.sleep", params)
        if holds:
            (view.path / files.RESULT).mkdir(parents=True, exist_ok=True)
            (view.path / files.RESULT / "done.json").write_text("{}")
        update_status(view.path, state=state, fraction=1.0)
        return view.id

    older = job({"seconds": 2, "steps": 1})
    demo = job(demo_params)
    job({"seconds": 3, "steps": 1}, state="failed")
    job({"seconds": 4, "steps": 1}, holds=False)  # succeeded but wrote nothing
    time.sleep(1.1)  # jobs are ordered by their creation second
    newer = job({"seconds": 5, "steps": 1})

    found = finished_results("diagnostics.sleep", "done.json", demo_params)
    assert [f.view.id for f in found] == [demo, newer, older]
    assert [f.is_demo for f in found] == [True, False, False]
    assert found[0].path == found[0].view.path / files.RESULT
    assert found[1].params["seconds"] == 5
