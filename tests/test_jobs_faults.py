"""Job folders under damage and hostile input: fast unit checks (python -m faults runs the rest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import SubnetScopeError
from engine.jobs import JobStore, Resources, get_job, list_jobs, submit, wait_job
from engine.jobs import processes as job_processes
from engine.jobs.files import check_job_id
from engine.jobs.runners import check_slurm_value, slurm_env
from engine.jobs.status_file import update_status_or_show
from engine.jobs.store import read_view

# Every test runs in a job cache of its own (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("job_cache")


def plant(root: Path, job_id: str, spec: object, status: bytes | None, age_s: float = 60):
    folder = root / "jobs" / job_id
    folder.mkdir(parents=True)
    if status is not None:
        (folder / "status.json").write_bytes(status)
    body = spec if isinstance(spec, bytes) else json.dumps(spec).encode()
    (folder / "spec.json").write_bytes(body)
    stamp = time.time() - age_s
    os.utime(folder / "spec.json", (stamp, stamp))
    return folder


def spec(job_id: str, **extra) -> dict:
    return {"id": job_id, "kind": "diagnostics.sleep", "params": {}, **extra}


@pytest.mark.parametrize(
    "job_id",
    ["../x", "/etc", "..", "a/b", "a;b", "$(id)", "x\ny", "x\0y", "", "x" * 200, "a.b", "%2e"],
)
def test_job_ids_that_are_paths_or_injections_are_refused(job_id) -> None:
    with pytest.raises(SubnetScopeError, match="is not a job id"):
        get_job(job_id)


def test_a_real_id_and_its_prefix_pass() -> None:
    assert check_job_id("20261205-142204-123456-train-lora-3fa9c1")
    assert check_job_id("20261205")


def test_damaged_folders_are_rows_of_their_own_and_hide_nothing(job_cache) -> None:
    good = wait_job(submit("diagnostics.sleep", {"seconds": 0.1, "steps": 1}).id, timeout=60)
    plant(job_cache, "20260101-a", spec("20260101-a", surprise=1), b'{"state": "queued"}')
    plant(job_cache, "20260101-b", b"\xff\xfe", b'{"state": "queued"}')
    plant(job_cache, "20260101-c", spec("someone-else"), b'{"state": "queued"}')
    plant(job_cache, "20260101-d", spec("20260101-d"), b"\xff not utf-8")
    plant(job_cache, "20260101-e", spec("20260101-e"), b"")
    views = {v.id: v for v in list_jobs()}
    assert views[good.id].status.state == "succeeded"
    messages = {i: views[i].status.message for i in views if i != good.id}
    assert all(views[i].status.state == "failed" for i in messages)
    assert "unknown keys: surprise" in messages["20260101-a"]
    assert "not UTF-8" in messages["20260101-b"]
    assert "not its folder's" in messages["20260101-c"]
    assert "status.json is not UTF-8" in messages["20260101-d"]
    assert "status.json is empty" in messages["20260101-e"]
    # The status-only damage was resolved on disk (the spec damage never writes into a folder).
    assert json.loads((job_cache / "jobs/20260101-e/status.json").read_text())["state"] == "failed"
    assert not (job_cache / "jobs/20260101-a/status.json").read_text().count("failed")


def test_a_folder_still_being_created_is_neither_failed_nor_started(job_cache) -> None:
    folder = plant(job_cache, "20260101-new", spec("20260101-new"), None, age_s=0)
    view = read_view(folder)
    assert view.status.state == "queued" and view.status.message == "being created"
    list_jobs()
    assert not (folder / "status.json").exists()


def test_finished_children_are_reaped_at_once() -> None:
    view = submit("diagnostics.sleep", {"seconds": 0.1, "steps": 1})
    pid = view.status.pid
    assert pid in job_processes._CHILDREN
    deadline = time.monotonic() + 60
    while job_processes._CHILDREN[pid].returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)  # nobody looks at the job: only its waiter thread can reap it
    time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    assert job_processes.exit_code(pid) == 0


def test_the_index_falls_back_to_the_folders_when_its_database_fails(job_cache) -> None:
    done = wait_job(submit("diagnostics.sleep", {"seconds": 0.1, "steps": 1}).id, timeout=60)
    (job_cache / "jobs.sqlite").unlink()
    (job_cache / "jobs.sqlite").mkdir()  # no database can be opened here
    store = JobStore()
    assert store.unavailable
    assert [v.id for v in list_jobs(store=store)] == [done.id]


def test_a_status_that_cannot_be_written_is_shown_not_raised(job_cache, monkeypatch) -> None:
    folder = plant(job_cache, "20260101-x", spec("20260101-x"), b'{"state": "running"}')

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engine.jobs.files.write_json_atomic", full)
    status = update_status_or_show(folder, state="failed", message="process died")
    assert status.state == "failed" and "not saved: No space left" in status.message
    assert json.loads((folder / "status.json").read_text())["state"] == "running"


@pytest.mark.parametrize(
    "value", ["gpu\n#SBATCH --x", "a;b", "$(id)", "a b", "`x`", "a|b", "a&b", "'a'", ["x"]]
)
def test_slurm_option_values_with_shell_characters_are_refused(value) -> None:
    with pytest.raises(SubnetScopeError):
        check_slurm_value("partition", value)


def test_plain_slurm_options_pass_and_submit_checks_before_writing(job_cache) -> None:
    for key, value in {
        "partition": "gpu-a100",
        "mem": "8GB",
        "time": 60,
        "qos": "normal",
        "additional_parameters": {"gres": "gpu:a100:2"},
    }.items():
        check_slurm_value(key, value)
    with pytest.raises(SubnetScopeError, match="shell character"):
        submit("diagnostics.sleep", backend="slurm", resources=Resources(partition="a;b"))
    assert not list((job_cache / "jobs").iterdir())


def test_slurm_jobs_inherit_no_secrets(job_cache, monkeypatch) -> None:
    secrets = {"HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "SUBNETSCOPE_API_KEY", "DB_PASSWORD"}
    for name in secrets:
        monkeypatch.setenv(name, "secret")
    monkeypatch.setenv("SUBNETSCOPE_THREADS", "3")
    folder = plant(job_cache, "20260101-s", spec("20260101-s"), b'{"state": "queued"}')
    env = slurm_env(read_view(folder))
    assert not {"HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "SUBNETSCOPE_API_KEY", "DB_PASSWORD"} & set(
        env
    )
    assert env["PATH"] and env["SUBNETSCOPE_CACHE"] == str(job_cache)
    assert env["OMP_NUM_THREADS"] == "1"


def test_cli_refuses_a_path_as_job_id_with_one_line(job_cache) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine", "jobs", "show", "../../etc"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SUBNETSCOPE_CACHE": str(job_cache)},
    )
    assert done.returncode != 0 and "is not a job id" in done.stderr
    assert "Traceback" not in done.stderr
