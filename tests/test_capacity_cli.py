"""`python -m engine capacity run|show`: a tiny sweep here, a submitted job's params, a finished
job's tables, and the one-line error when there is none."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from engine.capacity.config import CAPACITY_FILE, KIND, RUNS_FILE
from engine.cli import main
from engine.jobs import RESULT, api
from engine.jobs.status_file import update_status
from tests.job_support import hold_local_jobs

TINY = ["--sizes", "1x8", "--n", "2", "--vocab", "8", "--length", "4", "--max-steps", "20"]


def _json(capsys, argv: list[str]):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_run_here_prints_the_capacity_and_the_runs(capsys, job_cache) -> None:
    out = _json(capsys, ["capacity", "run", "--here", *TINY, "--eval-every", "10", "--json"])
    assert out["runs"] == 1 and len(out["rows"]) == 1 and len(out["capacity"]) == 1
    row = out["rows"][0]
    assert row["data_bits"] == 2 * 4 * 3 and row["steps"] == 20 and row["size"] == "1L×d8"
    assert out["capacity"][0]["bits_per_param"] == pytest.approx(
        row["memorized_bits"] / row["params"]
    )


def test_run_submits_a_job_and_show_reads_its_tables(capsys, job_cache, monkeypatch) -> None:
    hold_local_jobs(monkeypatch)
    assert main(["capacity", "run", *TINY, "--precisions", "fp32", "bf16"]) == 0
    job_id = capsys.readouterr().out.strip()
    [view] = api.list_jobs(kind=KIND)
    assert view.id == job_id
    assert view.spec.params["sizes"] == [[1, 8]] and view.spec.params["precisions"] == [
        "fp32",
        "bf16",
    ]
    assert main(["capacity", "show"]) == 1  # nothing finished yet: one error line
    assert capsys.readouterr().err.startswith("error: no finished result of any capacity.meter")
    runs = pd.DataFrame([{"size": "1L×d8", "precision": "fp32", "n": 2, "memorized_bits": 9.0}])
    capacity = pd.DataFrame([{"size": "1L×d8", "precision": "fp32", "bits_per_param": 0.01}])
    (view.path / RESULT).mkdir(exist_ok=True)
    runs.to_parquet(view.path / RESULT / RUNS_FILE)
    capacity.to_parquet(view.path / RESULT / CAPACITY_FILE)
    update_status(view.path, state="succeeded", fraction=1.0)
    shown = _json(capsys, ["capacity", "show", job_id, "--json"])
    assert shown["job"] == job_id and shown["capacity"][0]["bits_per_param"] == 0.01
    assert shown["rows"][0]["memorized_bits"] == 9.0
