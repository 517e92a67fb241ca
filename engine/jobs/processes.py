"""Local processes: start detached, tell alive from dead (pid reuse, zombies), signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from engine.paths import PROJECT_ROOT

# Popen objects of jobs this process started: the only way to learn their exit codes. A waiter
# thread per child reaps it the moment it ends (no zombie lingers until the dashboard restarts)
# and leaves its exit code in `returncode`.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (Linux); None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing ')'.
    return stat.rsplit(")", 1)[1].split()


def start_tick(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to detect a reused pid."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] == "Z"


def launch(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `command` in its own session (so it outlives us and is signalled as a group)."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return process


def engine_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def exit_code(pid: int) -> int | None:
    """The exit code of a child we started and that has ended; None if unknown or running."""
    process = _CHILDREN.get(pid)
    return None if process is None else process.returncode


def is_alive(pid: int | None, expected_start: int | None = None) -> bool:
    if pid is None:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.returncode is None  # set by its waiter thread when it ends
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _is_zombie(pid):
        return False
    if expected_start is not None:
        tick = start_tick(pid)
        if tick is not None and tick != expected_start:
            return False  # the pid now belongs to another process
    return True


def signal_group(pid: int, sig: signal.Signals) -> bool:
    """Signal the process group the job leads; False if it is already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, sig)
    return True
