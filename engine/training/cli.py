"""`python -m engine train ppo|grpo|sft --config FILE.yaml`: submit a run as a job."""

from __future__ import annotations

import argparse
from pathlib import Path


def read_config(method: str, path: str | Path) -> dict:
    """The YAML file's keys, checked against the method's config dataclass (one-line errors)."""
    import yaml

    from engine.errors import SubnetScopeError
    from engine.training.config import CONFIGS

    path = Path(path)
    if not path.is_file():
        raise SubnetScopeError(f"no config file at '{path}'")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise SubnetScopeError(f"{path} is not valid YAML: {first}") from None
    if not isinstance(params, dict):
        raise SubnetScopeError(f"{path} must hold a mapping of option: value")
    CONFIGS[method].from_params(params, what=str(path))  # validates keys and values
    return params


def _train(args: argparse.Namespace) -> int:
    import json

    from engine.jobs.cli import _submit

    params = read_config(args.method, args.config) if args.config else {}
    # The jobs CLI's submit does the rest (resources, --wait progress, exit codes).
    args.kind, args.params, args.partition = f"train.{args.method}", json.dumps(params), None
    return _submit(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="fine-tuning runs that track sparse updates")
    train.add_argument("method", choices=("sft", "grpo", "ppo"))
    train.add_argument("--config", help="YAML file of options (see `jobs kinds` for defaults)")
    train.add_argument("--backend", choices=("local", "slurm"), default="local")
    train.add_argument("--wait", action="store_true", help="show progress until the run ends")
    train.add_argument("--cpus", type=int, default=2)
    train.add_argument("--gpus", type=int, default=0)
    train.add_argument("--mem-gb", type=float, default=16.0)
    train.add_argument("--time-min", type=int, default=120)
    train.set_defaults(handler=_train)
