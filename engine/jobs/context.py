"""What a running job sees: progress and metric reporting, result writers, cancel requests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.atomic import save_safetensors_atomic, write_parquet_atomic
from engine.jobs import files
from engine.jobs.tensorboard import TB_DIR, ScalarWriter, params_markdown, tag_for

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
        self.tensorboard: ScalarWriter | None = None  # open_tensorboard() starts it

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
        board = self.tensorboard  # read once: close() may run on another thread
        if board is not None:
            board.scalar(tag_for(name, data), value, step)

    def report_resources(self, reading: dict[str, Any]) -> None:
        """A `resources` event (engine.jobs.resources.sample); with TensorBoard, its numbers
        also become `resources/<name>` scalars at step = whole seconds since the job started."""
        event = {"t": time.time(), "type": "resources", **reading}
        files.append_event(self.job_dir / files.EVENTS, event)
        board = self.tensorboard
        if board is not None and "elapsed_s" in reading:
            step = int(reading["elapsed_s"])
            for name, value in reading.items():
                if isinstance(value, float) and name != "elapsed_s":
                    board.scalar(f"resources/{name}", value, step)

    # TensorBoard ---------------------------------------------------------------------------
    def open_tensorboard(self, kind: str = "", params: dict[str, Any] | None = None) -> Path:
        """From now on every metric is also a TensorBoard scalar in `<job>/tensorboard/`
        (the executor calls this when the params' `report_to` names 'tensorboard')."""
        if self.tensorboard is None:
            self.tensorboard = ScalarWriter(self.job_dir / TB_DIR)
            if params is not None:
                self.tensorboard.text("params", params_markdown(kind, params))
        return self.tensorboard.logdir

    def close(self) -> None:
        """Flush and close the event file (the executor calls it before the final status)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

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
