"""The GPU check's dry mode (issue 19): every step runs on tiny models of the zoo's families on
this CPU, the real 1B and 8B plans fit an 80 GB GPU, and the JSON report has every step."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks import gpu_check
from engine.paths import PROJECT_ROOT


def test_step_budgets_add_up_to_at_most_eight_minutes() -> None:
    total = sum(sum(per_model.values()) for per_model in gpu_check.BUDGETS.values())
    assert total <= gpu_check.TOTAL_BUDGET_S == 480
    assert set(gpu_check.BUDGETS["build"]) == set(gpu_check.MODELS)


def test_without_a_gpu_the_real_check_refuses_in_one_sentence(capsys, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    assert "--dry" in capsys.readouterr().err


@pytest.mark.slow
def test_dry_run_executes_every_step_and_reports_it(tmp_path) -> None:
    # As scripts/gpu_check.sh runs it: a fresh process (LRP patches torch process-wide and
    # refuses a process that has imported streamlit, as this test process has after AppTests).
    out = tmp_path / "report.json"
    script = PROJECT_ROOT / "scripts" / "gpu_check.sh"
    done = subprocess.run(
        [script, "--dry", "--work", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "dry" and report["ok"]
    ran = {(s["name"], s["model"]) for s in report["steps"]}
    expected = {
        (name, model) for name, per_model in gpu_check.BUDGETS.items() for model in per_model
    }
    assert ran == expected
    assert all(s["ok"] and s["seconds"] is not None for s in report["steps"])
    for key in ("device", "torch", "transformers", "wall_seconds"):
        assert report[key]
    plans = {p["model"]: p for p in report["plans"]}
    assert set(plans) == set(gpu_check.MODELS)
    assert all(p["fits_80gb"] and p["device"] == "cuda" for p in plans.values())
    assert plans["8b"]["dtype"] == "bfloat16" and plans["8b"]["parameters"] > 7e9
