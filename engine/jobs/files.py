"""The job folder: paths of its files and their atomic reads and writes (files are the API)."""

# write_json_atomic is re-exported: job code writes status and results through this module.

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.atomic import write_json_atomic as write_json_atomic
from engine.paths import cache_root

SPEC = "spec.json"
STATUS = "status.json"
EVENTS = "events.jsonl"
LOG = "log.txt"
RESULT = "result"
MANIFEST = "manifest.json"
CANCEL = "cancel-requested"


def jobs_root() -> Path:
    return cache_root() / "jobs"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def append_event(path: Path, event: dict) -> None:
    # One write() per line, O_APPEND: concurrent appenders never interleave within a line.
    line = json.dumps(event, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def read_events(path: Path) -> list[dict]:
    events = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return events
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return events


def tail(path: Path, max_bytes: int = 20_000) -> str:
    """The end of a (log) file, without reading all of it."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text if size <= max_bytes else text.split("\n", 1)[-1]
