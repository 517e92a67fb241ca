"""`python -m engine jobs ...`: submit, list, show, follow, cancel and execute jobs; serve their
TensorBoard event files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.console import print_json

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3}


def _params(text: str | None) -> dict:
    from engine.jobs.params import parse_params

    path = Path(text) if text else None
    if path is not None and path.is_file():
        return parse_params(path.read_text(), what=f"file {path}")
    return parse_params(text or "", what="--params")


def _bar(view) -> str:
    s = view.status
    filled = int(s.fraction * 30)
    bar = "#" * filled + "." * (30 - filled)
    return f"\r[{bar}] {s.fraction:6.1%} {s.state:<9} {s.message[:60]:<60}"


class _ProgressPrinter:
    """Redraws one line on a terminal; elsewhere (logs, CI) prints a line per change."""

    def __init__(self) -> None:
        self.last: tuple | None = None
        self.tty = sys.stderr.isatty()

    def __call__(self, view) -> None:
        s = view.status
        key = (s.state, round(s.fraction, 3), s.message)
        if key == self.last:
            return
        self.last = key
        line = _bar(view)
        print(
            line if self.tty else line.lstrip("\r").rstrip(),
            end="" if self.tty else "\n",
            file=sys.stderr,
            flush=True,
        )


def _submit(args: argparse.Namespace) -> int:
    from engine.jobs.api import submit, wait_job
    from engine.jobs.model import Resources

    resources = Resources(
        cpus=args.cpus,
        gpus=args.gpus,
        mem_gb=args.mem_gb,
        time_min=args.time_min,
        partition=args.partition,
    )
    view = submit(
        args.kind,
        _params(args.params),
        backend=args.backend,
        resources=resources,
        shards=args.shards,
    )
    print(view.id, flush=True)
    if not args.wait:
        return 0
    view = wait_job(view.id, on_update=_ProgressPrinter())
    print(file=sys.stderr)
    if view.status.state != "succeeded":
        print(f"error: job {view.id} {view.status.state}: {view.status.message}", file=sys.stderr)
    return EXIT_CODES.get(view.status.state, 1)


def _list(args: argparse.Namespace) -> int:
    from engine.jobs.api import list_jobs

    states = tuple(args.state) if args.state else None
    views = list_jobs(kind=args.kind, states=states, limit=args.limit)
    if args.json:
        print_json([v.summary() for v in views])
        return 0
    print(f"{'id':<44} {'kind':<22} {'backend':<7} {'state':<10} {'progress':>8}  message")
    for v in views:
        s = v.status
        print(
            f"{v.id:<44} {v.spec.kind:<22} {v.spec.backend:<7} {s.state:<10} "
            f"{s.fraction:>8.0%}  {s.message[:50]}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    from engine.jobs.api import get_job, job_result

    view = get_job(args.id)
    summary = {**view.summary(), "result": job_result(view)}
    if args.json:
        print_json(summary)
    else:
        for key, value in summary.items():
            print(
                f"{key:>10}: {json.dumps(value, default=str) if isinstance(value, dict) else value}"
            )
    return 0


def _logs(args: argparse.Namespace) -> int:
    from engine.jobs.api import get_job
    from engine.jobs.files import LOG

    view = get_job(args.id)
    path = view.path / LOG
    with open(path, encoding="utf-8", errors="replace") as f:
        sys.stdout.write(f.read())
        while args.follow:
            chunk = f.read()
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
                continue
            if get_job(view.id).status.is_final:
                sys.stdout.write(f.read())
                break
            time.sleep(0.3)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from engine.jobs.api import cancel_job

    view = cancel_job(args.id, wait=not args.no_wait)
    print(f"{view.id} {view.status.state}")
    return 0


def _exec(args: argparse.Namespace) -> int:
    from engine.jobs.execute import exec_job

    return exec_job(Path(args.dir))


def _tensorboard(args: argparse.Namespace) -> int:
    from engine.errors import SubnetScopeError
    from engine.jobs.api import get_job, list_jobs
    from engine.jobs.tensorboard import logdir_spec, serve, tensorboard_files

    if args.ids:
        views = [get_job(job_id) for job_id in args.ids]
        missing = [v.id for v in views if not tensorboard_files(v.path)]
        if missing:
            raise SubnetScopeError(
                f"job {', '.join(missing)} wrote no TensorBoard files (a job writes them when "
                "its params' report_to names tensorboard, the training jobs' default)"
            )
    else:
        views = [v for v in list_jobs() if tensorboard_files(v.path)]
        if not views:
            raise SubnetScopeError(
                "no job has TensorBoard files yet (a job writes them when its params' "
                "report_to names tensorboard, the training jobs' default)"
            )
    spec = logdir_spec((v.id, v.path) for v in views)
    if args.print:
        print(spec)
        return 0
    _, url = serve(spec, port=args.port)
    print(f"TensorBoard for {len(views)} job(s) at {url} (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def _reindex(args: argparse.Namespace) -> int:
    from engine.jobs.store import JobStore

    print(f"{JobStore().rebuild()} jobs indexed")
    return 0


def _kinds(args: argparse.Namespace) -> int:
    from engine.jobs.registry import load_kinds
    from engine.jobs.split import split_kinds

    splittable = split_kinds()
    for name, kind in sorted(load_kinds().items()):
        mark = " [splits: --shards N]" if name in splittable else ""
        print(f"{name:<24} {kind.title}{mark}  defaults={json.dumps(kind.defaults)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    jobs = subparsers.add_parser("jobs")
    sub = jobs.add_subparsers(dest="command", metavar="COMMAND", required=True)

    submit = sub.add_parser("submit", help="start a job; prints its id")
    submit.add_argument("kind", help="job kind, e.g. eval.perplexity (see `jobs kinds`)")
    submit.add_argument("--params", help="a JSON object, or a file holding one")
    submit.add_argument("--backend", choices=("local", "slurm"), default="local")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="show progress until it ends; exit 0 succeeded, 1 failed, 3 cancelled",
    )
    submit.add_argument("--cpus", type=int, default=1)
    submit.add_argument(
        "--gpus",
        type=int,
        default=0,
        help="GPUs (SLURM: sbatch --gpus, per shard of a split job); a job that gets fewer "
        "fails at its start instead of running on the CPU",
    )
    submit.add_argument(
        "--shards",
        type=int,
        help="split the job into at most N shards (one SLURM array task each; locally one "
        "after another), then reduce them into the unsplit job's result; `jobs kinds` marks "
        "the kinds that split",
    )
    submit.add_argument("--mem-gb", type=float, default=8.0)
    submit.add_argument("--time-min", type=int, default=60)
    submit.add_argument("--partition", help="SLURM partition (default: the cluster's or config)")
    submit.set_defaults(handler=_submit)

    listing = sub.add_parser("list", help="jobs, newest first")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--kind")
    listing.add_argument(
        "--state",
        action="append",
        choices=("queued", "running", "succeeded", "failed", "cancelled"),
    )
    listing.add_argument("--limit", type=int)
    listing.set_defaults(handler=_list)

    show = sub.add_parser("show", help="one job's spec, status and result")
    show.add_argument("id", help="job id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)

    logs = sub.add_parser("logs", help="a job's stdout and stderr")
    logs.add_argument("id")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    logs.set_defaults(handler=_logs)

    cancel = sub.add_parser(
        "cancel", help="stop a job (SIGTERM, then SIGKILL after a grace period)"
    )
    cancel.add_argument("id")
    cancel.add_argument("--no-wait", action="store_true", help="return without waiting")
    cancel.set_defaults(handler=_cancel)

    execute = sub.add_parser("exec", help="run a job folder in this process (used by runners)")
    execute.add_argument("dir")
    execute.set_defaults(handler=_exec)

    kinds = sub.add_parser("kinds", help="the registered job kinds")
    kinds.set_defaults(handler=_kinds)

    board = sub.add_parser(
        "tensorboard",
        help="serve jobs' TensorBoard event files (<job>/tensorboard/) on 127.0.0.1",
    )
    board.add_argument(
        "ids",
        nargs="*",
        metavar="ID",
        help="job ids or unique prefixes (default: every job with event files)",
    )
    board.add_argument("--port", type=int, default=6006, help="port (0: any free one)")
    board.add_argument(
        "--print",
        "--dry",
        action="store_true",
        help="only print the --logdir_spec (name:path,...) that would be served",
    )
    board.set_defaults(handler=_tensorboard)

    reindex = sub.add_parser("reindex", help="rebuild cache/jobs.sqlite from the job folders")
    reindex.set_defaults(handler=_reindex)


def follow_job(
    args: argparse.Namespace,
    kind: str,
    params: dict[str, Any],
    message: Callable[[dict[str, Any]], str] = lambda summary: summary.get("message", ""),
) -> int:
    """Submit `kind` (the args' --backend, --cpus, --wait, --json, --quiet) and, with --wait,
    follow it to its end (exit 0 / 1 / 3 as `jobs submit`); `message` words the summary."""
    from engine.console import progress_printer
    from engine.jobs.api import job_result, submit, wait_job
    from engine.jobs.files import RESULT
    from engine.jobs.model import Resources

    view = submit(kind, params, backend=args.backend, resources=Resources(cpus=args.cpus))
    if not args.wait:
        if args.json:
            print_json({"job": view.id, "state": view.status.state})
        else:
            print(view.id)
        return 0
    if not args.json:
        print(view.id, flush=True)
    report, last = progress_printer(args.json or args.quiet), [None]

    def on_update(v) -> None:
        if (v.status.fraction, v.status.message) != last[0]:  # polled: print changes only
            last[0] = (v.status.fraction, v.status.message)
            report(*last[0])

    view = wait_job(view.id, on_update=on_update)
    result = job_result(view) or {}
    if args.json:
        print_json({"job": view.id, "state": view.status.state, **(result.get("summary") or {})})
    elif view.status.state == "succeeded":
        print(message(result.get("summary") or {}))
        print(f"results: {view.path / RESULT}")
    if view.status.state != "succeeded":
        print(f"error: job {view.id} {view.status.state}: {view.status.message}", file=sys.stderr)
    return EXIT_CODES.get(view.status.state, 1)
