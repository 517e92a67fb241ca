"""The SLURM backend on a real single-node cluster (scripts/slurm.sh start); CI requires it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from engine.jobs import Resources, cancel_job, get_job, job_log, job_result, submit, wait_job
from engine.paths import PROJECT_ROOT
from tests.optional import need

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.usefixtures("job_cache")]

SMALL = Resources(cpus=1, mem_gb=1, time_min=5)


def _cluster_up() -> bool:
    if shutil.which("sbatch") is None:
        return False
    script = PROJECT_ROOT / "scripts" / "slurm.sh"
    return subprocess.run([script, "status"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    need("slurm", _cluster_up(), "no SLURM cluster here (scripts/slurm.sh start runs one)")


def test_job_succeeds_on_slurm_with_its_result() -> None:
    view = submit("diagnostics.sleep", {"seconds": 1, "steps": 2}, backend="slurm", resources=SMALL)
    assert view.status.slurm_id and view.status.state == "queued"
    done = wait_job(view.id, timeout=120)
    assert done.status.state == "succeeded", (done.status, job_log(done))
    assert done.status.slurm_id == view.status.slurm_id
    assert job_result(done)["files"][0]["name"] == "sleep.json"
    assert "succeeded" in job_log(done)  # the job's own output lands in log.txt


def test_failing_job_on_slurm_is_failed_with_its_reason() -> None:
    view = submit("diagnostics.fail", {"message": "planted"}, backend="slurm", resources=SMALL)
    done = wait_job(view.id, timeout=120)
    assert (done.status.state, done.status.message) == ("failed", "planted")
    assert "Traceback" in job_log(done)


def test_running_slurm_job_ends_cancelled() -> None:
    view = submit(
        "diagnostics.sleep", {"seconds": 120, "steps": 240}, backend="slurm", resources=SMALL
    )
    deadline = time.monotonic() + 120
    while get_job(view.id).status.state != "running":
        assert time.monotonic() < deadline, "the SLURM job never started"
        time.sleep(0.2)
    cancel_job(view.id)
    done = wait_job(view.id, timeout=60)
    assert done.status.state == "cancelled"


def test_pending_slurm_job_ends_cancelled_through_sacct() -> None:
    # Two jobs that each want every core: the second waits in the queue until we cancel it.
    cores = os.cpu_count() or 2
    whole = Resources(cpus=cores, mem_gb=1, time_min=5)
    blocker = submit(
        "diagnostics.sleep", {"seconds": 60, "steps": 60}, backend="slurm", resources=whole
    )
    pending = submit("diagnostics.sleep", {"seconds": 1}, backend="slurm", resources=whole)
    try:
        time.sleep(1)
        assert get_job(pending.id).status.state == "queued"
        cancel_job(pending.id)
        done = wait_job(pending.id, timeout=60)
        assert done.status.state == "cancelled"
        assert done.status.pid is None  # it never ran
    finally:
        cancel_job(blocker.id)
        wait_job(blocker.id, timeout=60)
