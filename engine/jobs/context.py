"""What a running job sees: progress and metric reporting, result writers, cancel requests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.atomic import save_safetensors_atomic, write_parquet_atomic
from engine.jobs import files

if TYPE_CHECKING:
    import pandas as pd
    import torch


class JobCancelled(Exception):
    """Raised inside a job (by `ctx.check_cancel()` / `ctx.progress()`) once a cancel was asked."""


class JobContext:
    """Handed to a job function; every report lands in the job folder at once."""

    def __init__(self, job_dir: Path, update_status) -> None:
        self.job_dir = job_dir
        self.result_dir = job_dir / files.RESULT
        self.result_dir.mkdir(exist_ok=True)
        self._update_status = update_status
        self._cancel_flag = False
        self._result_files: list[str] = []
        self._last_status_write = 0.0

    # cancel -------------------------------------------------------------------------------
    def request_cancel(self) -> None:
        self._cancel_flag = True

    def cancelled(self) -> bool:
        """True once a cancel was asked (SIGTERM, or the folder's cancel marker)."""
        if not self._cancel_flag and (self.job_dir / files.CANCEL).exists():
            self._cancel_flag = True
        return self._cancel_flag

    def check_cancel(self) -> None:
        if self.cancelled():
            raise JobCancelled("cancelled on request")

    # progress -----------------------------------------------------------------------------
    def progress(self, fraction: float, message: str = "", **data: Any) -> None:
        """Report progress in [0, 1]; also the natural place for a job to stop when cancelled."""
        fraction = min(1.0, max(0.0, float(fraction)))
        event = {"t": time.time(), "type": "progress", "fraction": fraction, "message": message}
        files.append_event(self.job_dir / files.EVENTS, {**event, **data})
        now = time.monotonic()
        if now - self._last_status_write > 0.2 or fraction >= 1.0:
            self._update_status(fraction=fraction, message=message, heartbeat=time.time())
            self._last_status_write = now
        self.check_cancel()

    def metric(self, name: str, value: float, step: int | float | None = None, **data: Any) -> None:
        event = {"t": time.time(), "type": "metric", "name": name, "value": float(value)}
        if step is not None:
            event["step"] = step
        files.append_event(self.job_dir / files.EVENTS, {**event, **data})

    def log(self, message: str) -> None:
        print(message, flush=True)

    # results ------------------------------------------------------------------------------
    def result_path(self, name: str) -> Path:
        self._result_files.append(name)
        return self.result_dir / name

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.result_path(name)
        files.write_json_atomic(path, obj)
        return path

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        path = self.result_path(name)
        write_parquet_atomic(path, table, index=False)
        return path

    def write_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> Path:
        path = self.result_path(name)
        save_safetensors_atomic(path, {k: v.contiguous() for k, v in tensors.items()})
        return path

    def write_manifest(self, summary: Any = None) -> None:
        """Written last by the executor: a reader that sees it sees every result file."""
        listed = sorted(
            p.name for p in self.result_dir.iterdir() if p.is_file() and p.name != files.MANIFEST
        )
        manifest = {
            "files": [{"name": n, "bytes": (self.result_dir / n).stat().st_size} for n in listed],
            "summary": json.loads(json.dumps(summary, default=str))
            if summary is not None
            else None,
            "written": time.time(),
        }
        files.write_json_atomic(self.result_dir / files.MANIFEST, manifest)
