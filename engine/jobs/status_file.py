"""Read-modify-write of a job's status.json: atomic on disk, serialized across processes.

The launcher (recording a pid or SLURM id), the queue, the job itself and any reader that
reconciles a dead job all update the same file; a file lock keeps one from overwriting another's
change.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from engine.jobs import files
from engine.jobs.model import JobStatus

_LOCK = threading.Lock()


def read_status_strict(job_dir: Path) -> JobStatus:
    """The stored status; ValueError (with the reason) when status.json is missing or damaged."""
    data = files.read_json_strict(job_dir / files.STATUS)
    if data is None:
        raise ValueError(f"{files.STATUS} is missing")
    return JobStatus.from_json(data)


def read_status(job_dir: Path) -> JobStatus:
    """The stored status; a fresh `queued` one when it is missing or damaged."""
    try:
        return read_status_strict(job_dir)
    except (ValueError, TypeError):
        return JobStatus()


def update_status(job_dir: Path, **changes: Any) -> JobStatus:
    """Apply changes to the stored status; a final state is never overwritten by a non-final one."""
    with _LOCK, FileLock(str(job_dir / ".status.lock"), timeout=30):
        status = read_status(job_dir)
        if status.is_final and changes.get("state", status.state) != status.state:
            return status
        for key, value in changes.items():
            setattr(status, key, value)
        status.updated = time.time()
        files.write_json_atomic(job_dir / files.STATUS, status.to_json())
        return status


def update_status_or_show(job_dir: Path, **changes: Any) -> JobStatus:
    """`update_status` for readers (reconciling, the queue's positions): when the status cannot
    be written (a full disk, a read-only cache), the change is shown, not lost in a traceback —
    the next look tries to write it again."""
    try:
        return update_status(job_dir, **changes)
    except OSError as exc:
        status = read_status(job_dir)
        if status.is_final:
            return status
        for key, value in changes.items():
            setattr(status, key, value)
        status.message = f"{status.message} (not saved: {exc.strerror or exc})"
        return status
