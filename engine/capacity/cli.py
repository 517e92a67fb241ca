"""`python -m engine capacity run|show`: the capacity meter from the shell.

`run` submits a `capacity.meter` job (`--wait` follows it) or, with `--here`, runs in this
process; `show` prints a finished job's capacity and runs tables."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from engine.capacity.config import KIND, PAPER_BITS_PER_PARAM, PRECISIONS, MeterConfig
from engine.console import print_json, progress_printer

_SHOWN = ["size", "params", "precision", "capacity_bits", "bits_per_param", "n_at_max", "saturated"]


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per MeterConfig field, with its default and help text."""
    for f in dataclasses.fields(MeterConfig):
        flag, help_ = "--" + f.name.replace("_", "-"), f.metadata.get("help", "")
        if f.name == "sizes":
            default = [f"{layers}x{width}" for layers, width in f.default]  # type: ignore[union-attr]
            parser.add_argument(flag, nargs="+", default=default, metavar="LxW", help=help_)
        elif f.name == "precisions":
            parser.add_argument(
                flag, nargs="+", choices=PRECISIONS, default=list(f.default), help=help_
            )
        elif isinstance(f.default, tuple):
            parser.add_argument(
                flag, type=int, nargs="+", default=list(f.default), metavar="N", help=help_
            )
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=help_)


def _config(args: argparse.Namespace) -> MeterConfig:
    return MeterConfig.from_params(
        {f.name: getattr(args, f.name) for f in dataclasses.fields(MeterConfig)}, what=KIND
    )


def _print_tables(capacity, runs) -> None:
    paper = ", ".join(f"{k} {v}" for k, v in PAPER_BITS_PER_PARAM.items())
    print(f"capacity per size and precision (the paper's mean bits/param: {paper})")
    print(capacity[_SHOWN].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print("\nruns")
    cols = ["size", "precision", "n", "seed", "data_bits", "memorized_bits", "mem_u_bits"]
    print(
        runs[[*cols, "steps", "converged", "seconds"]].to_string(
            index=False, float_format=lambda x: f"{x:.6g}"
        )
    )


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    if not args.here:
        return _submit(args, config.to_params())
    from engine.capacity.sweep import run_meter

    result = run_meter(config, progress=progress_printer(args.quiet or args.json))
    if args.json:
        print_json(
            {
                **result.summary(),
                "capacity": result.capacity.to_dict(orient="records"),
                "rows": result.runs.to_dict(orient="records"),
            }
        )
        return 0
    _print_tables(result.capacity, result.runs)
    return 0


def _submit(args: argparse.Namespace, params: dict[str, Any]) -> int:
    from engine.jobs import Resources, job_result, submit, wait_job
    from engine.jobs.cli import EXIT_CODES

    view = submit(KIND, params, backend=args.backend, resources=Resources(cpus=args.cpus))
    print(view.id, flush=True)
    if not args.wait:
        return 0
    report, last = progress_printer(args.quiet), [None]

    def on_update(v) -> None:
        if (v.status.fraction, v.status.message) != last[0]:  # polled: print changes only
            last[0] = (v.status.fraction, v.status.message)
            report(*last[0])

    view = wait_job(view.id, on_update=on_update)
    if view.status.state != "succeeded":
        print(f"error: job {view.id} {view.status.state}: {view.status.message}", file=sys.stderr)
    else:
        print(((job_result(view) or {}).get("summary") or {}).get("message", ""))
    return EXIT_CODES.get(view.status.state, 1)


def _show(args: argparse.Namespace) -> int:
    import pandas as pd

    from engine.capacity.catalog import meter_results
    from engine.capacity.config import CAPACITY_FILE, RUNS_FILE
    from engine.errors import SubnetScopeError

    found = meter_results()
    if args.job:
        found = [r for r in found if r.view.id == args.job]
    if not found:
        which = f"job {args.job}" if args.job else "any capacity.meter job"
        raise SubnetScopeError(f"no finished result of {which}; start one with `capacity run`")
    folder = found[0].path
    runs = pd.read_parquet(folder / RUNS_FILE)
    capacity = pd.read_parquet(folder / CAPACITY_FILE)
    if args.json:
        print_json(
            {
                "job": found[0].view.id,
                "capacity": capacity.to_dict(orient="records"),
                "rows": runs.to_dict(orient="records"),
            }
        )
        return 0
    print(f"job {found[0].view.id}")
    _print_tables(capacity, runs)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    area = subparsers.add_parser("capacity")
    sub = area.add_subparsers(dest="capacity_command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="train GPT-2 sizes on random data: memorized bits, bits/param")
    _config_arguments(p)
    p.add_argument("--here", action="store_true", help="run in this process, not as a job")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--backend", choices=("local", "slurm"), default="local")
    p.add_argument("--cpus", type=int, default=1, help="CPU cores of the job")
    p.add_argument("--json", action="store_true", help="print JSON (with --here)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=_run)

    p = sub.add_parser("show", help="a finished meter's capacity and runs tables")
    p.add_argument("job", nargs="?", help="the job id (default: the newest finished)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_show)
