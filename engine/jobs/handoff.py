"""`python -m engine.jobs.handoff JOBS_ROOT PID`: move the local queue once process PID is gone.

A finished job hands its slot on through this small process instead of starting the next job
itself: the next job then starts only after the finished one has exited and returned its memory,
so N slots never mean N + 1 processes holding a model, not even for the second of a handoff.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

WAIT_S = 120.0  # a job that takes longer than this to exit is left to the next look


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie has returned its memory: it only waits for its parent to reap it
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def main(argv: list[str]) -> int:
    root, pid = Path(argv[0]), int(argv[1])
    deadline = time.monotonic() + WAIT_S
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    from engine.jobs.queue import pump
    from engine.jobs.store import JobStore

    pump(JobStore(root))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
