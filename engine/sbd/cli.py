"""`python -m engine sbd train|evaluate|show`: Set Block Decoding from the shell.

`train` and `evaluate` submit their job kinds (`--wait` follows the job) or, with `--here`, run in
this process; `show` prints a run's trade-off table: accuracy and forward passes per token at each
entropy threshold γ, against autoregressive decoding of the same model."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from engine.console import print_json, progress_printer
from engine.sbd.config import EVAL_KIND, TRAIN_KIND, EvalConfig, SBDConfig

SHOWN = [
    "method",
    "threshold",
    "block_size",
    "accuracy",
    "forwards_per_token",
    "forwards_per_answer",
    "speedup",
    "seconds_per_answer",
    "agreement",
    "base_ppl",
]


def _value(text: str) -> Any:
    """A key=value's value: JSON where it parses (numbers, true, lists), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _train_params(args: argparse.Namespace) -> dict[str, Any]:
    from engine.errors import SubnetScopeError
    from engine.jobs.params import parse_params

    params: dict[str, Any] = {}
    if args.params:
        path = Path(args.params)
        text = path.read_text() if path.is_file() else args.params
        params = parse_params(text, what=f"file {path}" if path.is_file() else "--params")
    for item in args.options:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise SubnetScopeError(f"options are key=value (steps=50), not '{item}'")
        params[key.strip().replace("-", "_")] = _value(value)
    return params


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per EvalConfig field but `run` (the positional argument)."""
    for f in dataclasses.fields(EvalConfig):
        if f.name == "run":
            continue
        flag, help_ = "--" + f.name.replace("_", "-"), f.metadata.get("help", "")
        if isinstance(f.default, tuple):
            parser.add_argument(
                flag, type=float, nargs="+", default=list(f.default), metavar="γ", help=help_
            )
        elif isinstance(f.default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_
            )
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=help_)


def _follow(args: argparse.Namespace, kind: str, params: dict[str, Any]) -> int:
    from engine.jobs.cli import follow_job

    return follow_job(args, kind, params, _message)


def _here_context(args: argparse.Namespace, what: str):
    """A job context over a folder of its own (`--out`, default cache/sbd/<what>-<time>), so a
    run here leaves the same files a job leaves; progress is printed, not stored."""
    from engine.jobs import JobContext
    from engine.paths import cache_root

    folder = (
        Path(args.out)
        if args.out
        else cache_root() / "sbd" / f"{what}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events.jsonl").touch()
    report = progress_printer(args.quiet or args.json)

    def status(fraction: float = 0.0, message: str = "", **_: Any) -> None:
        report(fraction, message)

    return JobContext(folder, status)


def _print_table(table, summary: dict[str, Any]) -> None:
    table = table[[c for c in SHOWN if c in table.columns]]
    print(
        "accuracy on held-out sums, forward passes per generated token (EOS included), speedup = "
        "autoregressive passes / SBD passes on the same prompts; base_ppl: the base model's "
        "perplexity of the generations"
    )
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-"))
    if summary.get("message"):
        print(summary["message"])


def _train(args: argparse.Namespace) -> int:
    # Errors before anything is submitted or loaded.
    config = SBDConfig.from_params(_train_params(args), what="sbd train")
    if not args.here:
        return _follow(args, TRAIN_KIND, config.to_params())
    from engine.sbd.train import run_sbd

    ctx = _here_context(args, "train")
    summary = run_sbd(config, ctx)
    ctx.write_manifest(summary)
    if args.json:
        print_json({"folder": str(ctx.job_dir), **(summary or {})})
        return 0
    print(_message(summary))
    print(f"results: {ctx.result_dir}")
    return 0


def _message(summary: dict[str, Any] | None) -> str:
    """A job's one-line outcome: its own message, else its evaluation's (an sbd.train run)."""
    summary = summary or {}
    return summary.get("message") or (summary.get("evaluation") or {}).get("message", "")


def _evaluate_config(args: argparse.Namespace) -> EvalConfig:
    fields = [f.name for f in dataclasses.fields(EvalConfig)]
    return EvalConfig.from_params({name: getattr(args, name) for name in fields}, what=EVAL_KIND)


def _evaluate(args: argparse.Namespace) -> int:
    config = _evaluate_config(args)
    if not args.here:
        return _follow(args, EVAL_KIND, config.to_params())
    import pandas as pd

    from engine.sbd.config import EVAL_FILE
    from engine.sbd.evaluate import run_evaluation

    ctx = _here_context(args, "evaluate")
    summary = run_evaluation(config, ctx)
    ctx.write_manifest(summary)
    table = pd.read_parquet(ctx.result_dir / EVAL_FILE)
    if args.json:
        print_json({"folder": str(ctx.job_dir), **summary, "rows": _records(table)})
        return 0
    _print_table(table, summary)
    print(f"results: {ctx.result_dir}")
    return 0


def _records(table) -> list[dict[str, Any]]:
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def _show(args: argparse.Namespace) -> int:
    import pandas as pd

    from engine.errors import SubnetScopeError
    from engine.jobs.files import read_json
    from engine.sbd.catalog import evaluations, run_label
    from engine.sbd.config import EVAL_FILE, EVAL_SUMMARY

    found = evaluations()
    if args.run == "demo":
        found = [r for r in found if r.is_demo]
    elif args.run:
        found = [r for r in found if r.view.id.startswith(args.run)]
    if not found:
        which = f"'{args.run}'" if args.run else "any SBD run"
        raise SubnetScopeError(
            f"no finished evaluation of {which}; train one with `sbd train` or evaluate a run "
            "with `sbd evaluate RUN`"
        )
    result = found[0]
    table = pd.read_parquet(result.path / EVAL_FILE)
    summary = read_json(result.path / EVAL_SUMMARY) or {}
    summary.pop("rows", None)
    if args.json:
        print_json(
            {
                "job": result.view.id,
                "kind": result.view.spec.kind,
                **summary,
                "rows": _records(table),
            }
        )
        return 0
    print(run_label(result))
    _print_table(table, summary)
    return 0


def _job_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--here", action="store_true", help="run in this process, not as a job")
    parser.add_argument(
        "--out", help=f"with --here: the folder to write into (default cache/sbd/{what}-<time>)"
    )
    parser.add_argument("--wait", action="store_true", help="follow the job until it ends")
    parser.add_argument("--backend", choices=("local", "slurm"), default="local")
    parser.add_argument("--cpus", type=int, default=1, help="CPU cores of the job")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def register(subparsers: argparse._SubParsersAction) -> None:
    area = subparsers.add_parser("sbd")
    sub = area.add_subparsers(dest="sbd_command", metavar="COMMAND", required=True)

    known = ", ".join(f.name for f in dataclasses.fields(SBDConfig))
    p = sub.add_parser(
        "train",
        help="fine-tune with the SBD objective (NTP + masked blocks), then evaluate it",
        epilog=f"options (key=value, or keys of the --params object): {known}",
    )
    p.add_argument("options", nargs="*", metavar="KEY=VALUE", help="SBDConfig options")
    p.add_argument("--params", help="a JSON object of options, or a file holding one")
    _job_options(p, "train")
    p.set_defaults(handler=_train)

    p = sub.add_parser(
        "evaluate",
        help="SBD at each threshold γ vs autoregressive decoding of a fine-tune: passes, accuracy",
    )
    p.add_argument("run", help=EvalConfig.help("run"))
    _eval_arguments(p)
    _job_options(p, "evaluate")
    p.set_defaults(handler=_evaluate)

    p = sub.add_parser("show", help="a finished run's or evaluation's trade-off table")
    p.add_argument(
        "run", nargs="?", help="an sbd.train or sbd.evaluate job id, or 'demo' (default: first)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_show)
