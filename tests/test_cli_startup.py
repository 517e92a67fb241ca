"""The CLI imports only what a command needs: every `--help`, jobs, tflite and demo status never
load torch, transformers or numba (each command runs in a fresh interpreter that records its
imports)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.areas import AREAS
from engine.cli import build_parser, register_area
from engine.paths import PROJECT_ROOT
from engine.tflite import synthetic

HEAVY = ("torch", "transformers", "numba")

# `python -m engine ARGS` in this interpreter; on exit it writes the modules it imported, and for
# each heavy one the engine frames that first imported it, to the JSON file named first.
WRAPPER = rf"""
import json, runpy, sys, traceback

HEAVY = {set(HEAVY)!r}
record, sys.argv = sys.argv[1], ["engine", *sys.argv[2:]]
first = {{}}


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in HEAVY and name not in first:
            first[name] = [
                f"{{f.filename}}:{{f.lineno}}"
                for f in traceback.extract_stack()
                if "/engine/" in f.filename
            ]
        return None


sys.meta_path.insert(0, Watch())
try:
    runpy.run_module("engine", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exc:
    code = exc.code
with open(record, "w") as f:
    json.dump({{"modules": sorted(sys.modules), "first": first}}, f)
sys.exit(code)
"""


@pytest.fixture
def cli(job_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run `python -m engine *args` in a fresh interpreter; fail if it imported a heavy module."""
    records = tmp_path_factory.mktemp("imports")

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        record = records / f"{len(list(records.iterdir()))}.json"
        done = subprocess.run(
            [sys.executable, "-c", WRAPPER, str(record), *args],
            cwd=PROJECT_ROOT,
            env={**os.environ, "SUBNETSCOPE_CACHE": str(job_cache), **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert record.is_file(), f"`{' '.join(args)}` wrote no record:\n{done.stderr}"
        seen = json.loads(record.read_text())
        loaded = [m for m in HEAVY if m in seen["modules"]]
        assert not loaded, f"`python -m engine {' '.join(args)}` imported {loaded}, first via\n" + (
            "\n".join(f"{m}: {' -> '.join(seen['first'].get(m, ['?']))}" for m in loaded)
        )
        return done

    return run


def test_help_lists_every_command_of_the_table(cli) -> None:
    done = cli("--help")
    assert done.returncode == 0
    for area in AREAS:
        for command in area.commands:
            assert command.word in done.stdout
            assert " ".join(command.help.split()[:3]) in " ".join(done.stdout.split())
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("subnetscope engine ")
    unknown = cli("nope")
    assert unknown.returncode == 2 and "invalid choice: 'nope'" in unknown.stderr


def test_jobs_commands_load_no_model_library(cli) -> None:
    assert cli("jobs", "list").returncode == 0
    kinds = cli("jobs", "kinds")
    assert kinds.returncode == 0
    names = [line.split()[0] for line in kinds.stdout.splitlines()]
    assert "diagnostics.sleep" in names
    board = cli("jobs", "tensorboard", "--print")  # no job has event files yet: one error line
    assert board.returncode == 1 and board.stderr.startswith("error: no job has TensorBoard")
    # One slot, held by a long sleep: the other jobs wait in the queue, never run. A submit loads
    # every kinds module and runs no kind's own code, so one kind of each area covers them all.
    env = {"SUBNETSCOPE_MAX_JOBS": "1"}
    sleeper = cli("jobs", "submit", "diagnostics.sleep", "--params", '{"seconds": 60}', env=env)
    assert sleeper.returncode == 0, sleeper.stderr
    ids = [sleeper.stdout.strip()]
    one_per_area = {name.split(".")[0]: name for name in reversed(names)}
    for name in sorted(set(one_per_area.values()) - {"diagnostics.sleep"}):
        done = cli("jobs", "submit", name, env=env)
        assert done.returncode == 0, f"{name}: {done.stderr}"
        ids.append(done.stdout.strip())
    listed = json.loads(cli("jobs", "list", "--json").stdout)
    assert sorted(j["id"] for j in listed) == sorted(ids)
    shown = json.loads(cli("jobs", "show", ids[-1], "--json", env=env).stdout)
    assert shown["state"] == "queued"
    assert cli("jobs", "show", ids[0]).returncode == 0
    assert cli("jobs", "logs", ids[0]).returncode == 0
    for job_id in reversed(ids):
        done = cli("jobs", "cancel", job_id, env=env)
        assert done.returncode == 0 and done.stdout.split() == [job_id, "cancelled"], done.stderr
    assert cli("jobs", "reindex").stdout.startswith(f"{len(ids)} jobs indexed")


def test_tflite_commands_load_no_model_library(cli, tmp_path: Path) -> None:
    model = str(synthetic.write_mlp(tmp_path / "mlp.tflite"))
    inspect = cli("tflite", "inspect", model, "--json")
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["format"] == "tflite"
    for args in (
        ("inspect", model),
        ("ops", model),
        ("tensors", model, "--json"),
        ("findings", model),
        ("diff", model, model),
        ("dump", model, "--all", "--out", str(tmp_path / "dump")),
    ):
        done = cli("tflite", *args)
        assert done.returncode == 0, f"tflite {args[0]}: {done.stderr}"
    missing = cli("tflite", "inspect", str(tmp_path / "missing.tflite"))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1


def test_demo_status_loads_no_model_library(cli) -> None:
    states = json.loads(cli("demo", "status", "--json").stdout)
    assert states and {s["state"] for s in states} == {"missing"}
    assert cli("demo", "status").returncode == 0


def test_every_command_help_loads_no_model_library(cli) -> None:
    """`<word> --help` builds the area's whole parser (choices and defaults from its configs)."""
    for area in AREAS:
        for command in area.commands:
            done = cli(command.word, "--help")
            assert done.returncode == 0, done.stderr
            assert f"python -m engine {command.word}" in done.stdout


@pytest.mark.parametrize("area", [a for a in AREAS if a.commands], ids=lambda a: a.name)
def test_each_area_registers_the_words_of_its_row(area) -> None:
    """register_area raises unless the area's `register` adds exactly its row's words."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    placeholders = {c.word: subparsers.choices[c.word] for c in area.commands}
    register_area(subparsers, area)
    for word, placeholder in placeholders.items():
        assert subparsers.choices[word] is not placeholder
        assert subparsers.choices[word].prog == f"python -m engine {word}"
