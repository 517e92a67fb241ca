"""Wall time of light `python -m engine` commands in a fresh interpreter, against `import torch`:
the floor every command paid while the CLI imported every area (issue 17; target < 0.5 s)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.runner import ROOT, Result, benchmark, compare, spread
from engine.tflite.synthetic import write_mlp

TARGET_SECONDS = 0.5
TIMEOUT = 120.0


def _time(args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of `python ARGS` from the project root (output discarded, must succeed)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True, timeout=TIMEOUT
    )
    return time.perf_counter() - started


@benchmark("cli_startup", repeats=5)
def cli_startup(repeats: int) -> list[Result]:
    """Seconds for `--help`, `jobs list`, `tflite inspect` of a 2 KB file and `demo status` in an
    empty workspace, each against `python -c 'import torch'` measured in the same rounds."""
    with tempfile.TemporaryDirectory(prefix="cli_startup-") as tmp:
        model = write_mlp(Path(tmp) / "mlp.tflite")
        model_bytes = model.stat().st_size
        # An empty workspace: the numbers are the start-up cost, not the size of a job listing.
        env = {**os.environ, "SUBNETSCOPE_CACHE": str(Path(tmp) / "cache"), "OMP_NUM_THREADS": "1"}
        runs = {
            "python_pass": ["-c", "pass"],
            "import_torch": ["-c", "import torch"],
            "help": ["-m", "engine", "--help"],
            "jobs_list": ["-m", "engine", "jobs", "list"],
            "tflite_inspect": ["-m", "engine", "tflite", "inspect", str(model)],
            "demo_status": ["-m", "engine", "demo", "status"],
        }
        for args in runs.values():  # unmeasured: a warm file cache for every measured run
            _time(args, env)
        samples: dict[str, list[float]] = {name: [] for name in runs}
        order = list(runs)
        for round_ in range(repeats):
            # Interleaved, each round starting one later, so all see the same machine load.
            shift = round_ % len(order)
            for name in order[shift:] + order[:shift]:
                samples[name].append(_time(runs[name], env))
    results = []
    for name in order[2:]:
        median = statistics.median(samples[name])
        results.append(
            compare(
                f"cli_startup.{name}",
                f"seconds for a fresh `python {' '.join(runs[name][:4])}` (median)",
                samples[name],
                "python -c 'import torch'",
                samples["import_torch"],
                details={
                    "interpreter_startup": spread(samples["python_pass"]),
                    "target_seconds": TARGET_SECONDS,
                    "under_target": median < TARGET_SECONDS,
                    "tflite_file_bytes": model_bytes,
                },
            )
        )
    return results
