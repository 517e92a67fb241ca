"""The job folder: paths of its files, job ids, and their atomic reads and writes (files are the
API between processes)."""

# write_json_atomic is re-exported: job code writes status and results through this module.

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from engine.atomic import write_json_atomic as write_json_atomic
from engine.errors import SubnetScopeError
from engine.paths import cache_root

SPEC = "spec.json"
STATUS = "status.json"
EVENTS = "events.jsonl"
LOG = "log.txt"
RESULT = "result"
MANIFEST = "manifest.json"
CANCEL = "cancel-requested"

# What _new_id writes (`20261205-142204-123456-train-lora-3fa9c1`) and every prefix of it: a
# job id never holds a path separator, a dot-dot or anything a shell or a URL reads differently.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def jobs_root() -> Path:
    return cache_root() / "jobs"


def check_job_id(job_id: str) -> str:
    """`job_id` if it is one (or a prefix of one); else one sentence of SubnetScopeError."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        shown = repr(job_id)[:60]
        raise SubnetScopeError(
            f"{shown} is not a job id (letters, digits, '-' and '_', as `jobs list` prints them)"
        )
    return job_id


class Unreadable(ValueError):
    """A job file that exists but cannot be read as JSON (empty, truncated, not UTF-8)."""


def read_json(path: Path) -> dict | None:
    """The file's JSON; None when it is missing or being replaced. Damage is None too: use
    `read_json_strict` where it must be told from absence."""
    try:
        return read_json_strict(path)
    except Unreadable:
        return None


def read_json_strict(path: Path) -> dict | None:
    """None when the file is missing; Unreadable (with the reason) when it is damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unreadable(f"{path.name} cannot be read ({exc.strerror or exc})") from exc
    if not data.strip():
        raise Unreadable(f"{path.name} is empty")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Unreadable(f"{path.name} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise Unreadable(f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def append_event(path: Path, event: dict) -> None:
    # One write() per line, O_APPEND: concurrent appenders never interleave within a line.
    line = json.dumps(event, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def read_events(path: Path) -> list[dict]:
    """Every event line that parses as a JSON object; damaged lines are skipped."""
    events = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return events
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now, or damage
        if isinstance(event, dict):
            events.append(event)
    return events


def tail(path: Path, max_bytes: int = 20_000) -> str:
    """The end of a (log) file, without reading all of it."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except (FileNotFoundError, IsADirectoryError):
        return ""
    text = data.decode("utf-8", errors="replace")
    return text if size <= max_bytes else text.split("\n", 1)[-1]
