"""`python -m engine`: the command line over every engine area, built from `engine.areas.AREAS`.

The top level lists each area's words and help from the table without importing any area; the
one command given loads only its area's `cli` module and calls its `register(subparsers)`, so
`jobs list` or `tflite inspect` never pays for torch. A command's handler returns an exit code.
Expected failures (SubnetScopeError) print one line on stderr and exit 1, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from engine import __version__
from engine.areas import AREAS, Area, area_for_command
from engine.errors import SubnetScopeError


def register_area(subparsers: argparse._SubParsersAction, area: Area) -> None:
    """Import `area.cli_module` and add its commands' parsers to `subparsers` (replacing the
    placeholders the top level made for them); its `register` must add exactly the row's words."""
    # A scratch action, since add_parser refuses a word the placeholder holds; the top-level
    # help listing keeps the table's lines.
    scratch = argparse._SubParsersAction(
        option_strings=[], prog=subparsers._prog_prefix, parser_class=subparsers._parser_class
    )
    importlib.import_module(area.cli_module).register(scratch)
    words = [c.word for c in area.commands]
    if sorted(scratch.choices) != sorted(words):
        raise RuntimeError(
            f"{area.cli_module}.register added {sorted(scratch.choices)}, but engine/areas.py "
            f"lists {sorted(words)} for the area '{area.name}'"
        )
    subparsers.choices.update(scratch.choices)


class _AreaCommands(argparse._SubParsersAction):
    """The top-level subcommands: an area's real parsers are loaded when its word is parsed
    (argparse has no lazy subcommands, hence a subclass of its subparsers action)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Sequence[str],
        option_string: str | None = None,
    ) -> None:
        area = area_for_command(values[0])
        if area is not None and values[0] not in self._loaded:
            register_area(self, area)
            self._loaded.update(c.word for c in area.commands)
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="SubnetScope engine: find, measure and switch sparse subnetworks in LMs.",
    )
    parser.add_argument("--version", action="version", version=f"subnetscope engine {__version__}")
    subparsers = parser.add_subparsers(
        dest="area", metavar="AREA", required=True, action=_AreaCommands
    )
    for area in AREAS:
        for command in area.commands:
            subparsers.add_parser(command.word, help=command.help)  # replaced when parsed
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
