"""The local job queue: N slots, submission order, memory, settings, restarts, demo submits once."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest

from engine.demo import DemoPart, build_demo, demo_part
from engine.demo import parts as parts_module
from engine.errors import SubnetScopeError
from engine.jobs import (
    JobStore,
    Resources,
    cancel_job,
    list_jobs,
    load_kinds,
    submit,
    wait_job,
)
from engine.jobs import queue as job_queue
from engine.jobs.status_file import read_status
from engine.paths import PROJECT_ROOT

NAP = {"seconds": 0.3, "steps": 3, "tag": "test-nap"}  # the part of tests/demo_parts_plugin.py


# Every test runs in a job cache of its own (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("job_cache")


def statuses(views):
    return [read_status(v.path) for v in views]


def wait_files(views, states=("succeeded",), timeout=120.0):
    """Wait on the status files alone: no look that would move the queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(s.state in states for s in statuses(views)):
            return statuses(views)
        time.sleep(0.2)
    raise TimeoutError([s.state for s in statuses(views)])


def test_one_slot_runs_jobs_one_at_a_time_in_order_and_moves_without_a_look(monkeypatch) -> None:
    monkeypatch.setenv("SUBNETSCOPE_MAX_JOBS", "1")
    views = [submit("diagnostics.sleep", {"seconds": 0.6, "steps": 3}) for _ in range(3)]
    first, *rest = statuses(views)
    assert first.pid is not None
    waiting = [(s.state, s.pid, s.position) for s in rest]
    assert waiting == [("queued", None, 1), ("queued", None, 2)]
    assert "2nd in the local queue" in rest[1].message
    # Nothing here looks at the jobs again: each finished job starts the next one.
    done = wait_files(views)
    spans = [(datetime.fromisoformat(s.started), datetime.fromisoformat(s.finished)) for s in done]
    assert [a for a, _ in spans] == sorted(a for a, _ in spans)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end.replace(microsecond=0)  # never two at once
    assert all(s.position is None for s in done)


def test_slots_and_memory_both_bound_the_running_jobs(monkeypatch) -> None:
    monkeypatch.setenv("SUBNETSCOPE_MAX_JOBS", "3")
    monkeypatch.setenv("SUBNETSCOPE_JOB_MEMORY_GB", "1.0")
    heavy = Resources(mem_gb=0.6)
    views = [
        submit("diagnostics.sleep", {"seconds": 0.5, "steps": 2}, resources=heavy) for _ in range(3)
    ]
    state = job_queue.queue_state(JobStore())
    assert len(state.running) == 1 and len(state.waiting) == 2  # 0.6 + 0.6 > 1.0
    assert state.memory_in_use_gb == pytest.approx(0.6)
    wait_files(views)


def test_a_job_larger_than_the_whole_budget_waits_to_run_alone(monkeypatch) -> None:
    monkeypatch.setenv("SUBNETSCOPE_MAX_JOBS", "2")
    monkeypatch.setenv("SUBNETSCOPE_JOB_MEMORY_GB", "2")
    small = submit("diagnostics.sleep", {"seconds": 1, "steps": 2}, resources=Resources(mem_gb=1))
    big = submit("diagnostics.sleep", {"seconds": 0.2, "steps": 1}, resources=Resources(mem_gb=5))
    status = read_status(big.path)
    assert status.state == "queued" and status.pid is None
    assert "declares 5 GB, more than the budget: it will run alone" in status.message
    done = wait_files([small, big])
    assert datetime.fromisoformat(done[1].started) >= datetime.fromisoformat(done[0].finished)


def test_kinds_declare_their_memory() -> None:
    view = submit("diagnostics.sleep", {"seconds": 0.1, "steps": 1})
    assert view.spec.resources.mem_gb == 0.3
    done = wait_job(view.id, timeout=60)
    assert 0.01 < done.status.peak_rss_gb < 2.0  # measured at the end, for declaring


def test_cancelling_a_waiting_job_starts_the_next(monkeypatch) -> None:
    monkeypatch.setenv("SUBNETSCOPE_MAX_JOBS", "1")
    running = submit("diagnostics.sleep", {"seconds": 60, "steps": 60})
    waiting = submit("diagnostics.sleep", {"seconds": 0.2, "steps": 1})
    third = submit("diagnostics.sleep", {"seconds": 0.2, "steps": 1})
    assert cancel_job(waiting.id).status.state == "cancelled"
    assert read_status(third.path).position == 1
    cancel_job(running.id, wait=True)
    assert wait_job(third.id, timeout=60).status.state == "succeeded"


def test_settings_env_wins_over_file_wins_over_default(monkeypatch, job_cache) -> None:
    default = job_queue.queue_settings()
    assert default.max_jobs == max(1, (os.cpu_count() or 2) // 2)
    saved = job_queue.save_queue_settings(3, 7.5)
    assert (saved.max_jobs, saved.memory_gb) == (3, 7.5)
    assert json.loads((job_cache / "queue.json").read_text()) == {"max_jobs": 3, "memory_gb": 7.5}
    monkeypatch.setenv("SUBNETSCOPE_MAX_JOBS", "5")
    assert job_queue.queue_settings().max_jobs == 5
    assert "$SUBNETSCOPE_MAX_JOBS" in job_queue.queue_settings().source
    with pytest.raises(SubnetScopeError, match="max_jobs must be a positive number"):
        job_queue.save_queue_settings(0, 4)
    (job_cache / "queue.json").write_text("{broken")
    monkeypatch.delenv("SUBNETSCOPE_MAX_JOBS")
    assert job_queue.queue_settings().max_jobs == default.max_jobs  # damage is the default


def test_the_queue_survives_its_submitting_process(job_cache) -> None:
    """Jobs queued by a process that then exits (a dashboard restart) still all run."""
    env = {**os.environ, "SUBNETSCOPE_MAX_JOBS": "1"}
    code = (
        "from engine.jobs import submit\n"
        "for _ in range(3): print(submit('diagnostics.sleep', {'seconds': 0.3, 'steps': 1}).id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ids = done.stdout.split()
    assert len(ids) == 3
    store = JobStore()
    views = [store.root / i for i in ids]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(read_status(p).state == "succeeded" for p in views):
            break
        time.sleep(0.2)
    assert [read_status(p).state for p in views] == ["succeeded"] * 3


def test_demo_parts_are_submitted_once_by_concurrent_threads_and_processes(
    job_cache, monkeypatch
) -> None:
    env = {**os.environ, "SUBNETSCOPE_JOB_MODULES": "tests.demo_parts_plugin"}
    code = "from engine.demo import build_demo; build_demo('test-nap')"
    processes = [
        subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env) for _ in range(3)
    ]
    # In this process the same part joins a swapped registry (the product's stays untouched).
    load_kinds()
    monkeypatch.setattr(parts_module, "_PARTS", {})
    demo_part(DemoPart("test-nap", "A quick job", "diagnostics.sleep", NAP))
    threads = [threading.Thread(target=build_demo, args=("test-nap",)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0]
    naps = [v for v in list_jobs() if v.spec.params == {**v.spec.params, **NAP}]
    assert len(naps) == 1
