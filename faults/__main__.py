"""`python -m faults [--only NAME ...] [--json FILE]`: run the scenarios, print the table."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from faults.table import Row, markdown, scenarios

# Importing these registers their scenarios; a new scenario file adds one line here.
MODULES = (
    "faults.jobs",
    "faults.tflite_inputs",
    "faults.inputs",
)


def run(only: list[str] | None = None) -> list[Row]:
    # A dashboard started by a scenario builds no demo unless the scenario asks for it.
    os.environ.setdefault("SUBNETSCOPE_AUTO_DEMO", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for module in MODULES:
        importlib.import_module(module)
    rows: list[Row] = []
    for name, fn in scenarios().items():
        if only and name not in only:
            continue
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as scratch:
            try:
                rows.extend(fn(Path(scratch)))
            except Exception as exc:  # a scenario that crashes is a failed row, not a crash
                traceback.print_exc()
                rows.append(Row(name, "the whole scenario", f"crashed: {exc!r}"[:300], ok=False))
            finally:
                stop_processes_under(scratch)
        print(f"[faults] {name}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return rows


def stop_processes_under(folder: str) -> None:
    """Kill what a scenario left running in its scratch folder (job processes), so the folder
    can go and the next scenario starts on a quiet machine."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if folder in command:
            with contextlib.suppress(OSError):
                os.killpg(int(proc.name), signal.SIGKILL)
    time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    parser.add_argument("--only", nargs="*", help="scenario names")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = run(args.only)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
