"""What the area CLIs print with: JSON on stdout, progress lines on stderr (a leaf module)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def progress_printer(quiet: bool = False) -> Callable[[float, str], None]:
    """A `progress(fraction, message)` callback that prints `[ 42.0%] message` lines on stderr,
    or nothing when `quiet`."""

    def report(fraction: float, message: str) -> None:
        if not quiet:
            print(f"[{100 * fraction:5.1f}%] {message}", file=sys.stderr, flush=True)

    return report
