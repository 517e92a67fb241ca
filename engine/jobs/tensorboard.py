"""TensorBoard for jobs: a job's metrics as event files under `<job>/tensorboard/`, and the
logdir spec that `python -m engine jobs tensorboard` serves.

The `tensorboard` package is imported only by a job that writes event files and by the serving
command, never at import of this module (the `jobs` commands stay light).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.errors import SubnetScopeError

TB_DIR = "tensorboard"  # inside the job folder, beside result/ (not a result file)
TENSORBOARD = "tensorboard"
FLUSH_S = 2.0  # a live TensorBoard sees a running job's scalars within this many seconds
DEFAULT_PORT = 6006


def report_to(value: Any) -> list[str]:
    """A job's `report_to` param as a list of names: a string (comma separated) or a list;
    'none' and empty entries dropped; anything else is no reporting."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        return []
    names = (str(v).strip() for v in value)
    return [n for n in names if n and n != "none"]


def wants_tensorboard(params: dict[str, Any]) -> bool:
    """True when the job's params ask for TensorBoard (`report_to` names 'tensorboard')."""
    return TENSORBOARD in report_to(params.get("report_to"))


def trainer_report_to(value: Any) -> list[str]:
    """`report_to` for a TRL / transformers trainer: the job's names without 'tensorboard',
    which the job writes itself from its metrics (a second copy from the trainer's own
    TensorBoardCallback would repeat every train/* scalar)."""
    return [n for n in report_to(value) if n != TENSORBOARD]


def tag_for(name: str, data: dict[str, Any]) -> str:
    """A metric event's TensorBoard tag: its name, then `/key=value` for each whole-number or
    text field that tells its series apart (layer=3, task=sentiment); float fields are values
    beside it, not identity."""
    parts = [name]
    for key, value in data.items():
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            parts.append(f"{key}={value}")
    return "/".join(parts)


class ScalarWriter:
    """One event file in `logdir` (tensorboard's own EventFileWriter, flushed every FLUSH_S):
    scalars and a text. Thread-safe (the writer queues events for its own thread)."""

    def __init__(self, logdir: Path) -> None:
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError:
            raise SubnetScopeError(
                "report_to names tensorboard but the tensorboard package is not installed "
                "(pip install -r requirements.txt), or give report_to 'none'"
            ) from None

        logdir.mkdir(parents=True, exist_ok=True)
        self.logdir = logdir
        self._writer = EventFileWriter(str(logdir), flush_secs=FLUSH_S)
        self._counts: dict[str, int] = {}

    def scalar(self, tag: str, value: float, step: int | float | None = None) -> None:
        """`step` None: the tag's own count of values so far (0, 1, …)."""
        from tensorboard.compat.proto import event_pb2, summary_pb2

        if step is None:
            step = self._counts.get(tag, 0)
        self._counts[tag] = self._counts.get(tag, 0) + 1
        value = summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        self._add(event_pb2.Event(step=round(step), summary=summary_pb2.Summary(value=[value])))

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        """A text summary (TensorBoard's Text tab renders it as markdown)."""
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2

        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, string_val=[markdown.encode("utf-8")]
        )
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
        )
        value = summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)
        self._add(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[value])))

    def _add(self, event) -> None:
        event.wall_time = time.time()
        self._writer.add_event(event)

    def close(self) -> None:
        self._writer.close()


def params_markdown(kind: str, params: dict[str, Any]) -> str:
    """The job's kind and params as a markdown block (the TRL trainers' `args` text, for all)."""
    shown = json.dumps(params, indent=2, default=str).splitlines()
    return f"**{kind}**\n\n" + "\n".join(f"    {line}" for line in shown)  # a code block


def tensorboard_files(job_dir: Path) -> list[Path]:
    """The TensorBoard event files a job folder holds (its `tensorboard/`, any depth)."""
    root = Path(job_dir) / TB_DIR
    return sorted(root.rglob("events.out.tfevents.*")) if root.is_dir() else []


def logdir_spec(job_dirs: Iterable[tuple[str, Path]]) -> str:
    """TensorBoard's `--logdir_spec`: `name:path` per job (name = job id), comma separated."""
    parts = []
    for name, job_dir in job_dirs:
        path = str(Path(job_dir) / TB_DIR)
        if "," in path or "," in name:
            raise SubnetScopeError(
                f"TensorBoard cannot take a logdir with a comma in it ({path}); move the cache "
                "(SUBNETSCOPE_CACHE) to a path without one"
            )
        parts.append(f"{name}:{path}")
    return ",".join(parts)


def serve(spec: str, *, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> tuple[Any, str]:
    """Start TensorBoard on `spec` in this process (port 0: any free one); returns the server
    and its URL. The server runs in a background thread until the process ends."""
    from tensorboard import program

    server = program.TensorBoard()
    # load_fast=false: the Rust data server does not take --logdir_spec.
    server.configure(logdir_spec=spec, host=host, port=port, load_fast="false")
    try:
        url = server.launch()
    except program.TensorBoardServerException as exc:
        raise SubnetScopeError(
            f"TensorBoard could not serve on {host}:{port} ({exc.msg}); pick another with "
            "--port (0: any free port)"
        ) from None
    return server, url
