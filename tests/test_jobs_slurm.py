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


# --- split jobs: the shards as one SLURM array, then the reduce -----------------------------


@pytest.fixture
def squares_kind(monkeypatch):
    monkeypatch.setenv("SUBNETSCOPE_JOB_MODULES", "tests.job_array_kinds")
    import tests.job_array_kinds as kinds

    return kinds.KIND


def _array_tasks(array_id: str) -> list[str]:
    done = subprocess.run(
        ["sacct", "-X", "-n", "--parsable2", "-o", "JobID", "-j", array_id],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return sorted(line for line in done.stdout.split() if line)


def _wait_array_tasks(array_id: str, expected: list[str]) -> None:
    """sacct lists exactly these tasks of the array (it trails the jobs by a few seconds)."""
    deadline = time.monotonic() + 30
    while _array_tasks(array_id) != expected:
        assert time.monotonic() < deadline, _array_tasks(array_id)
        time.sleep(0.5)


def test_split_job_runs_as_one_array_with_the_local_result(squares_kind) -> None:
    from engine.jobs.split import shard_dirs
    from engine.jobs.status_file import read_status

    params = {"numbers": [1, 2, 3, 4, 5, 6, 7]}
    local = wait_job(submit(squares_kind, params, shards=3).id, timeout=120)
    view = submit(squares_kind, params, backend="slurm", resources=SMALL, shards=3)
    array_id = view.status.array_id
    assert array_id and view.status.slurm_id != array_id  # the reduce is a job of its own
    done = wait_job(view.id, timeout=240)
    assert done.status.state == "succeeded", (done.status, job_log(done))
    result = (done.path / "result" / "squares.json").read_text()
    assert result == (local.path / "result" / "squares.json").read_text()
    assert done.status.shards_done == 3
    slurm_ids = [read_status(d).slurm_id for d in shard_dirs(done.path)]
    assert slurm_ids == [f"{array_id}_{i}" for i in range(3)]
    _wait_array_tasks(array_id, slurm_ids)


def test_failed_shard_on_slurm_fails_the_job_with_its_reason(squares_kind) -> None:
    params = {"numbers": [1, 2, 3, 4, 5, 6, 7], "fail_on": 5}
    view = submit(squares_kind, params, backend="slurm", resources=SMALL, shards=3)
    done = wait_job(view.id, timeout=240)
    assert (done.status.state, done.status.message) == (
        "failed",
        "shard 2/3 failed: planted failure on 5",
    )


def test_cancelled_split_job_on_slurm_cancels_its_array(squares_kind) -> None:
    from engine.jobs.split import shard_dirs
    from engine.jobs.status_file import read_status

    params = {"numbers": [1, 2, 3, 4], "pause": 60.0}
    view = submit(squares_kind, params, backend="slurm", resources=SMALL, shards=2)
    deadline = time.monotonic() + 120
    while get_job(view.id).status.state != "running":
        assert time.monotonic() < deadline, "no shard ever started"
        time.sleep(0.2)
    cancel_job(view.id)
    done = wait_job(view.id, timeout=60)
    assert done.status.state == "cancelled"
    deadline = time.monotonic() + 60
    while not all(read_status(d).is_final for d in shard_dirs(view.path)):
        assert time.monotonic() < deadline, [read_status(d) for d in shard_dirs(view.path)]
        get_job(view.id)
        time.sleep(0.5)


def test_split_ica_capture_on_slurm_matches_the_local_run(tiny_folder, tmp_path) -> None:
    import numpy as np
    import pandas as pd

    texts = tmp_path / "texts.txt"
    texts.write_text("\n\n".join(f"Text {i}: the {w} sat." for i, w in enumerate("abcdefg")))
    params = {
        "model": tiny_folder("llama"),
        "datasets": [str(texts)],
        "samples_per_ds": 7,
        "layers": "0,1",
        "batch_size": 2,
        "max_length": 16,
    }
    local = wait_job(submit("ica.capture", params).id, timeout=180)
    view = submit("ica.capture", params, backend="slurm", resources=SMALL, shards=2)
    done = wait_job(view.id, timeout=300)
    assert done.status.state == "succeeded", (done.status, job_log(done))
    assert local.status.state == "succeeded", (local.status, job_log(local))
    a, b = local.path / "result", done.path / "result"
    np.testing.assert_array_equal(np.load(a / "activations.npy"), np.load(b / "activations.npy"))
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "tokens.parquet"), pd.read_parquet(b / "tokens.parquet")
    )
    _wait_array_tasks(done.status.array_id, [f"{done.status.array_id}_{i}" for i in (0, 1)])


def test_gpus_the_cluster_lacks_are_sbatchs_reason_in_one_sentence(squares_kind) -> None:
    """This cluster has no GPUs: sbatch refuses `--gpus=1`, and the job says why."""
    from engine.errors import SubnetScopeError
    from engine.jobs import list_jobs
    from engine.jobs.split import shard_dirs
    from engine.jobs.status_file import read_status

    gpu = Resources(cpus=1, gpus=1, mem_gb=1, time_min=5)
    with pytest.raises(SubnetScopeError, match=r"^sbatch refused the job: error: .*gres"):
        submit(squares_kind, {"numbers": [1, 2]}, backend="slurm", resources=gpu, shards=2)
    (view,) = list_jobs()
    assert view.status.state == "failed" and view.status.message.startswith("sbatch refused")
    assert [read_status(d).state for d in shard_dirs(view.path)] == ["cancelled"] * 2
