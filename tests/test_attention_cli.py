"""`python -m engine attention stats|compare|sweep|context|layout` on a tiny model folder, and the
area's help texts without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.cli import main
from engine.paths import PROJECT_ROOT
from tests.job_support import hold_local_jobs
from tests.tiny import tiny_model

TINY = ["--max-tokens", "32", "--texts", "2", "--window", "4"]


@pytest.fixture
def folder(tiny_folder) -> str:
    return tiny_folder("gemma3n")  # layer 0 local (window 16), layer 1 global


def _json(capsys, argv: list[str]):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_layout_and_stats(capsys, folder) -> None:
    layout = _json(capsys, ["attention", "layout", "--model", folder, "--json"])
    assert [(row["layer"], row["kind"]) for row in layout] == [(0, "local"), (1, "global")]
    stats = _json(capsys, ["attention", "stats", "--model", folder, *TINY, "--json"])
    assert stats["texts"] == 2 and stats["window"] == 4 and stats["tokens"] == 64
    assert len(stats["heads"]) == 2 * 2 and {"entropy", "sink"} <= set(stats["heads"][0])
    assert main(["attention", "stats", "--model", folder, *TINY, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "local" in out and "global" in out and "entropy (nats)" in out


def test_compare_a_checkpoint_folder(capsys, folder, tmp_path) -> None:
    tiny_model("gemma3n", seed=1).model.save_pretrained(tmp_path / "checkpoint-5")
    argv = ["attention", "compare", "--model", folder, "--tuned", str(tmp_path / "checkpoint-5")]
    out = _json(capsys, [*argv, *TINY, "--stat", "sink", "--json"])
    assert out["tuned_kind"] == "model" and out["stat"] == "sink" and len(out["heads"]) == 4
    assert {row["kind"] for row in out["by_kind"]} == {"local", "global"}
    assert main([*argv, *TINY, "--top", "2", "--quiet"]) == 0
    assert "the 2 heads whose entropy moved most" in capsys.readouterr().out


def test_sweep_and_context_run_here(capsys, folder) -> None:
    small = ["--texts", "2", "--max-tokens", "24", "--windows", "4", "8"]
    sweep = _json(capsys, ["attention", "sweep", "--here", "--model", folder, *small, "--json"])
    assert sweep["layers_swept"] == 1 and sweep["cheapest_layer"] == 1  # the one global layer
    assert [row["window"] for row in sweep["rows"]] == [4, 8]
    context = _json(
        capsys,
        ["attention", "context", "--here", "--model", folder, "--lengths", "16", "32", "--json"],
    )
    assert [row["length"] for row in context["timing"]] == [16, 32]
    assert main(["attention", "context", "--here", "--model", folder, "--lengths", "128"]) == 1
    err = capsys.readouterr().err  # refused from the config, before any weight is read
    assert err.startswith("error: ") and "(64 positions)" in err and err.count("\n") == 1


def test_sweep_submits_its_job_kind(capsys, folder, job_cache, monkeypatch) -> None:
    from engine.jobs import get_job

    hold_local_jobs(monkeypatch)
    submitted = _json(capsys, ["attention", "sweep", "--model", folder, "--layers", "1", "--json"])
    view = get_job(submitted["job"])
    assert view.spec.kind == "attention.sweep" and submitted["state"] == "queued"
    assert view.spec.params["layers"] == "1" and view.spec.params["windows"] == [32]
    assert main(["attention", "context", "--model", folder]) == 0
    assert get_job(capsys.readouterr().out.strip()).spec.kind == "attention.context"
    assert main(["attention", "sweep", "--max-tokens", "16"]) == 1  # checked before submitting
    assert "longer than the window" in capsys.readouterr().err


def test_every_attention_help_loads_no_model_library() -> None:
    script = (
        "import sys\n"
        "from engine.cli import build_parser\n"
        "for word in ('stats', 'compare', 'sweep', 'context', 'layout'):\n"
        "    try:\n"
        "        build_parser().parse_args(['attention', word, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--windows N [N ...]" in done.stdout and "--tuned TUNED" in done.stdout
