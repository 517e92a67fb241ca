"""`python -m engine`: the command line over every engine area.

Each area contributes a `register(subparsers)` function; a command's handler returns an exit code.
Expected failures (SubnetScopeError) print one line on stderr and exit 1, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from engine import __version__
from engine.errors import SubnetScopeError


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    from engine.attribution import cli as attribution_cli
    from engine.demo import cli as demo_cli
    from engine.ica import cli as ica_cli
    from engine.jobs import cli as jobs_cli
    from engine.lora import cli as lora_cli
    from engine.models import cli as models_cli
    from engine.neurons import cli as neurons_cli
    from engine.sparsity import cli as sparsity_cli
    from engine.tflite import cli as tflite_cli
    from engine.training import cli as training_cli

    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="SubnetScope engine: find, measure and switch sparse subnetworks in LMs.",
    )
    parser.add_argument("--version", action="version", version=f"subnetscope engine {__version__}")
    subparsers = parser.add_subparsers(dest="area", metavar="AREA")
    subparsers.required = True
    models_cli.register(subparsers)
    jobs_cli.register(subparsers)
    demo_cli.register(subparsers)
    tflite_cli.register(subparsers)
    sparsity_cli.register(subparsers)
    training_cli.register(subparsers)
    ica_cli.register(subparsers)
    attribution_cli.register(subparsers)
    lora_cli.register(subparsers)
    neurons_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SubnetScopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error; keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
