"""Local jobs end to end: real detached processes, folders as the truth, every way a job ends."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from engine.errors import SubnetScopeError
from engine.jobs import (
    JobStore,
    cancel_job,
    get_job,
    job_events,
    job_log,
    job_result,
    list_jobs,
    submit,
    wait_job,
)
from engine.jobs import files as job_files
from engine.paths import PROJECT_ROOT

# Every test runs in a job cache of its own (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("job_cache")


def wait_until(predicate, timeout: float = 30.0, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError("condition not met")


def test_submit_runs_to_success_with_its_result(job_cache) -> None:
    view = submit("diagnostics.sleep", {"seconds": 0.3, "steps": 3})
    assert view.status.pid and view.path.parent == job_cache / "jobs"
    done = wait_job(view.id, timeout=60)
    assert done.status.state == "succeeded" and done.status.fraction == 1.0
    assert done.status.exit_code == 0
    manifest = job_result(done)
    assert [f["name"] for f in manifest["files"]] == ["sleep.json"]
    assert json.loads((done.path / "result" / "sleep.json").read_text())["steps"] == 3
    events = job_events(done)
    assert [e["fraction"] for e in events if e["type"] == "progress"] == pytest.approx(
        [1 / 3, 2 / 3, 1.0]
    )
    assert [e["value"] for e in events if e["type"] == "metric"] == [0.0, 1.0, 4.0]
    spec = json.loads((done.path / "spec.json").read_text())
    assert spec["kind"] == "diagnostics.sleep" and spec["engine_version"]
    assert (job_cache / "jobs.sqlite").is_file()


def test_failing_job_keeps_traceback_in_log_and_reason_in_status() -> None:
    view = submit("diagnostics.fail", {"message": "planted failure"})
    done = wait_job(view.id, timeout=60)
    assert done.status.state == "failed"
    assert done.status.message == "planted failure"
    log = job_log(done)
    assert "Traceback (most recent call last)" in log and "planted failure" in log
    assert job_result(done) is None  # no manifest: no result


def test_killed_process_is_failed_on_the_next_look() -> None:
    view = submit("diagnostics.sleep", {"seconds": 60, "steps": 60})
    wait_until(lambda: get_job(view.id).status.state == "running")
    os.kill(view.status.pid, signal.SIGKILL)
    looked = wait_until(lambda: (v := get_job(view.id)).status.is_final and v)
    assert looked.status.state == "failed"
    assert looked.status.message.startswith("process died")
    assert looked.status.exit_code == -9  # known: this process started it


def test_cancel_ends_cancelled_within_two_seconds() -> None:
    view = submit("diagnostics.sleep", {"seconds": 60, "steps": 600})
    wait_until(lambda: get_job(view.id).status.state == "running")
    started = time.monotonic()
    cancel_job(view.id)
    done = wait_job(view.id, timeout=10, poll_s=0.05)
    assert done.status.state == "cancelled"
    assert time.monotonic() - started < 2.0


def test_cancel_escalates_to_sigkill_for_a_job_that_ignores_sigterm() -> None:
    view = submit("diagnostics.sleep", {"seconds": 60, "steps": 1})  # one long sleep
    wait_until(lambda: get_job(view.id).status.state == "running")
    os.kill(view.status.pid, signal.SIGSTOP)  # a stopped process handles no signal but KILL
    done = cancel_job(view.id, wait=True)
    assert done.status.state == "cancelled"


def test_two_jobs_run_at_once(monkeypatch) -> None:
    monkeypatch.setenv("SUBNETSCOPE_MAX_JOBS", "2")  # two slots (the default here is one)
    first = submit("diagnostics.sleep", {"seconds": 3, "steps": 30})
    second = submit("diagnostics.sleep", {"seconds": 3, "steps": 30})
    wait_until(
        lambda: all(get_job(v.id).status.state == "running" for v in (first, second)), timeout=60
    )
    assert {v.status.state for v in (wait_job(first.id), wait_job(second.id))} == {"succeeded"}


def test_another_process_lists_and_follows_a_running_job(job_cache) -> None:
    view = submit("diagnostics.sleep", {"seconds": 120, "steps": 240})
    wait_until(lambda: get_job(view.id).status.state == "running")
    env = {**os.environ, "SUBNETSCOPE_CACHE": str(job_cache)}
    command = [sys.executable, "-m", "engine", "jobs"]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = json.loads(cli("list", "--json").stdout)
    assert [(j["id"], j["state"]) for j in listed] == [(view.id, "running")]
    shown = json.loads(cli("show", view.id[:-2], "--json").stdout)  # a unique prefix will do
    assert {"id", "kind", "state", "fraction", "message", "pid", "slurm_id"} <= set(shown)
    assert shown["state"] == "running" and shown["pid"] == view.status.pid
    # Follow the log from another process until the job ends (here: cancelled from this one).
    follower = subprocess.Popen(
        [*command, "logs", view.id, "-f"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    cancel_job(view.id)
    out, _ = follower.communicate(timeout=120)
    assert follower.returncode == 0
    assert "started" in out and "cancelled" in out
    assert get_job(view.id).status.state == "cancelled"


def test_store_is_rebuilt_from_the_folders(job_cache) -> None:
    view = submit("diagnostics.sleep", {"seconds": 0.1, "steps": 1})
    wait_job(view.id, timeout=60)
    (job_cache / "jobs.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (job_cache / f"jobs.sqlite{suffix}").unlink(missing_ok=True)
    assert [v.id for v in list_jobs()] == [view.id]
    assert JobStore().rebuild() == 1


def test_status_files_are_written_atomically(job_cache) -> None:
    view = submit("diagnostics.sleep", {"seconds": 1, "steps": 100})
    seen = 0
    while not get_job(view.id).status.is_final:
        data = job_files.read_json(view.path / "status.json")
        assert data is not None  # never a half-written file
        seen += 1
    assert seen > 5
    assert not list(view.path.glob(".status.json.*"))


def test_bad_kind_and_params_are_clear_errors() -> None:
    with pytest.raises(SubnetScopeError, match="unknown job kind 'nope'; known kinds: "):
        submit("nope", {})
    with pytest.raises(SubnetScopeError, match="no job 'missing'"):
        get_job("missing")


def test_cli_submit_wait_exit_codes(job_cache) -> None:
    env = {**os.environ, "SUBNETSCOPE_CACHE": str(job_cache)}

    def submit_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "engine", "jobs", "submit", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = submit_cli("diagnostics.sleep", "--params", '{"seconds": 0.2}', "--wait")
    assert ok.returncode == 0
    assert re.fullmatch(r"\d{8}-\d{6}-\d{6}-diagnostics-sleep-[0-9a-f]{6}", ok.stdout.strip())
    bad = submit_cli("diagnostics.fail", "--wait")
    assert bad.returncode == 1 and "failing on purpose" in bad.stderr
    params = submit_cli("diagnostics.sleep", "--params", "{oops")
    assert params.returncode == 1
    assert params.stderr.startswith("error: --params is not valid JSON")
    assert "Traceback" not in params.stderr
