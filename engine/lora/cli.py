"""`python -m engine lora blend|inspect|deltas|generate|generators`: LoRA adapters from the command
line."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.lora import cli_blend, cli_deltas, cli_generate

    lora = subparsers.add_parser("lora")
    commands = lora.add_subparsers(dest="lora_command", metavar="COMMAND")
    commands.required = True
    cli_blend.register(commands)
    cli_deltas.register(commands)
    cli_generate.register(commands)
