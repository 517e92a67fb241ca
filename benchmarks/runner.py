"""The benchmark registry and runner: run the chosen benchmarks, print a table, write JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Importing these registers their benchmarks; a new benchmark file adds one line here.
MODULES = (
    "benchmarks.cold_start",
    "benchmarks.mask_overhead",
    "benchmarks.tflite_open",
    "benchmarks.sparsity_diff",
    "benchmarks.ica_decompose",
    "benchmarks.pruning",
    "benchmarks.lora_blend",
    "benchmarks.lora_live",
    "benchmarks.lora_generator",
    "benchmarks.neuron_overlap",
    "benchmarks.rank1_svd",
    "benchmarks.cli_startup",
    "benchmarks.scale",
    "benchmarks.attention_capture",
    "benchmarks.sbd_decoding",
)
BENCH_THREADS = 1  # torch threads in this process: one core gives the least noisy ratios


@dataclass
class Result:
    """One measured number, with the baseline it is judged against when it has one."""

    name: str
    metric: str  # what `value` measures, in words
    value: float
    unit: str
    repeats: int
    baseline: str | None = None  # what the baseline measured, in words
    baseline_value: float | None = None
    ratio: float | None = None  # value / baseline_value
    details: dict[str, Any] = field(default_factory=dict)


BenchFn = Callable[[int], "Result | list[Result]"]


@dataclass(frozen=True)
class Benchmark:
    name: str
    fn: BenchFn  # called with the number of repeats
    default_repeats: int


REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, *, repeats: int = 3) -> Callable[[BenchFn], BenchFn]:
    """Register `fn(repeats) -> Result | list[Result]` under `name`."""

    def register(fn: BenchFn) -> BenchFn:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = Benchmark(name, fn, repeats)
        return fn

    return register


def load_benchmarks() -> dict[str, Benchmark]:
    for module in MODULES:
        importlib.import_module(module)
    return REGISTRY


def spread(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the raw samples, rounded for the JSON."""
    return {
        "median": round(statistics.median(samples), 6),
        "min": round(min(samples), 6),
        "max": round(max(samples), 6),
        "samples": [round(s, 6) for s in samples],
    }


def compare(
    name: str,
    metric: str,
    samples: Sequence[float],
    baseline: str,
    baseline_samples: Sequence[float],
    *,
    unit: str = "s",
    details: dict[str, Any] | None = None,
) -> Result:
    """A result whose value and baseline are the medians of samples taken side by side."""
    value = statistics.median(samples)
    base = statistics.median(baseline_samples)
    return Result(
        name=name,
        metric=metric,
        value=value,
        unit=unit,
        repeats=len(samples),
        baseline=baseline,
        baseline_value=base,
        ratio=value / base if base else None,
        details={"measured": spread(samples), "baseline": spread(baseline_samples)}
        | (details or {}),
    )


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    import torch

    status = _git("status", "--porcelain")
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "streamlit": _version("streamlit"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(),
        "torch_threads_set_by_runner": BENCH_THREADS,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def format_table(results: Sequence[Result]) -> str:
    """A plain aligned table: one row per result."""
    header = ("result", "value", "unit", "min–max", "baseline", "base value", "ratio", "n")
    rows = [header]
    for r in results:
        measured = r.details.get("measured", {})
        span = f"{_num(measured['min'])}–{_num(measured['max'])}" if measured else "-"
        rows.append(
            (
                r.name,
                _num(r.value),
                r.unit,
                span,
                r.baseline or "-",
                _num(r.baseline_value),
                "-" if r.ratio is None else f"{r.ratio:.3f}",
                str(r.repeats),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {1, 3, 5, 6, 7}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None, names: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run SubnetScope's benchmarks; each reports a ratio against a baseline "
        "measured side by side in the same run.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(names)}",
    )
    parser.add_argument(
        "--repeats", type=int, help="measured repeats per benchmark (default: its own)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON path (default: cache/benchmarks/results-<UTC time>.json, also copied to "
        "cache/benchmarks/latest.json)",
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    registry = load_benchmarks()
    args = parse_args(argv, list(registry))

    from engine.atomic import write_json_atomic
    from engine.paths import cache_root
    from engine.runtime import limit_threads

    limit_threads(BENCH_THREADS)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    env = environment()
    results: list[Result] = []
    errors: list[dict[str, str]] = []
    for name in args.only or list(registry):
        bench = registry[name]
        repeats = args.repeats or bench.default_repeats
        print(f"==> {name} (repeats={repeats})", file=sys.stderr, flush=True)
        bench_clock = time.perf_counter()
        try:
            out = bench.fn(repeats)
        except Exception as exc:
            traceback.print_exc()
            errors.append({"benchmark": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        seconds = round(time.perf_counter() - bench_clock, 3)
        got = out if isinstance(out, list) else [out]
        for result in got:
            result.details |= {"benchmark": name, "benchmark_seconds": seconds}
        results.extend(got)

    wall = time.perf_counter() - clock
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 3),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "environment": env,
        "results": [asdict(r) for r in results],
        "errors": errors,
    }
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out_dir = cache_root() / "benchmarks"
    out_path = args.out or out_dir / f"results-{stamp}.json"
    write_json_atomic(out_path, report)
    if args.out is None:
        write_json_atomic(out_dir / "latest.json", report)

    print(format_table(results))
    for error in errors:
        print(f"FAILED {error['benchmark']}: {error['error']}")
    print(f"\nwall time {wall:.1f} s; results in {out_path}")
    return 1 if errors else 0


def json_child(argv: Sequence[str], what: str, timeout: float, **env: str) -> dict[str, Any]:
    """Run `python -m <argv…>` from the checkout with one BLAS/torch thread (plus `env`) and
    return the JSON object its last stdout line holds; a failure raises with its stderr's end.
    Benchmarks measure memory and patched-torch work in such fresh processes."""
    done = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
