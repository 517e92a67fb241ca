"""`python -m engine sparsity ...`: diff writes the long parquet and a JSON summary, series and
compare answer, and a bad path is one line on stderr."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from safetensors.torch import save_file

from tests.tiny import tiny_model

REQUIRED = ["tensor", "layer", "module", "numel", "tolerance", "changed", "fraction"]
EXTRA = ["exact_changed", "bf16_changed", "rel_norm"]


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """engine.cli.main with the artifact cache in a temp folder."""
    from engine import cli as engine_cli

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    return engine_cli.main


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    model = tiny_model("llama").model
    model.save_pretrained(root / "base")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    run = root / "run"
    for step, rows in ((1, 2), (2, 5)):
        state["model.layers.1.mlp.up_proj.weight"][:rows, 0] += 0.5
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        save_file(state, folder / "model.safetensors")
        shutil.copy(root / "base" / "config.json", folder)
    return {"base": root / "base", "tuned": run / "checkpoint-2", "run": run}


def test_diff_writes_the_long_parquet_and_a_json_summary(cli, pair, tmp_path, capsys) -> None:
    out = tmp_path / "diff.parquet"
    args = ["sparsity", "diff", "--base", str(pair["base"]), "--tuned", str(pair["tuned"])]
    assert cli([*args, "--tolerances", "1e-5", "1e-6", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["changed"]["1e-05"]["changed"] == 5
    assert summary["layers"]["fraction"]["1e-06"][0] == 0.0
    assert summary["out"] == str(out)
    # One tensor moved: all of the update in one of the seed's 15 tracked tensors (2 blocks × 7
    # and the untied lm_head) and in one of the 2 blocks.
    seed = summary["localization_seed"]
    assert (seed["basis"], seed["n"], seed["active"]) == ("tensor_fro", 15, 1)
    assert seed["gini"] == pytest.approx(1.0) and seed["gini_unscaled"] == pytest.approx(14 / 15)
    assert summary["localization"]["basis"] == "block_changed"
    table = pd.read_parquet(out)
    assert set(REQUIRED + EXTRA) <= set(table.columns)
    assert sorted(table["tolerance"].unique()) == [1e-6, 1e-5]
    up = table[(table["tensor"] == "model.layers.1.mlp.up_proj.weight")]
    assert up["changed"].tolist() == [5, 5] and up["module"].iloc[0] == "mlp.up_proj"
    # The plain report, from the cache this time.
    assert cli([*args, "--ranks"]) == 0
    text = capsys.readouterr().out
    assert "|Δ| > 1e-05" in text and "per layer:" in text and "ranks:" in text
    assert "localization, changed weights per block (1e-06): gini 1.000" in text
    assert "localization, seed 000: per-tensor ‖ΔW‖_F (15 tensors): gini 1.000" in text


def test_series_and_compare(cli, pair, tmp_path, capsys) -> None:
    assert (
        cli(
            [
                "sparsity",
                "series",
                "--base",
                str(pair["base"]),
                "--run-dir",
                str(pair["run"]),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    steps = out["steps"]
    assert [s["step"] for s in steps] == [1, 2]
    assert [s["coverage"] for s in steps] == pytest.approx([0.4, 1.0])
    seed = out["seed_coverage"]
    assert [(s["tau"], s["step"]) for s in seed] == [
        (t, st) for t in (1e-7, 1e-6, 1e-5) for st in (1, 2)
    ]
    assert [s["coverage"] for s in seed] == pytest.approx([0.4, 1.0] * 3)
    assert (
        cli(["sparsity", "series", "--base", str(pair["base"]), "--run-dir", str(pair["run"])]) == 0
    )
    assert "analyze_sparse_subnetwork.py" in capsys.readouterr().out
    saved = tmp_path / "one.parquet"
    diff_args = ["--base", str(pair["base"]), "--tuned", str(pair["tuned"]), "--out", str(saved)]
    assert cli(["sparsity", "diff", *diff_args]) == 0
    capsys.readouterr()
    early = pair["run"] / "checkpoint-1"
    runs = [f"pair={pair['base']}:{pair['tuned']}", str(saved), f"early={pair['base']}:{early}"]
    assert cli(["sparsity", "compare", "--runs", *runs, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [m["run"] for m in out["metrics"]] == ["pair", "one", "early"]
    assert all(m["gini"] == pytest.approx(1.0) and m["top_k"] == 1.0 for m in out["metrics"])
    # Masks exist for the diffed runs only: 2 of 5 changed weights shared.
    assert [(o["run_a"], o["run_b"], o["jaccard"]) for o in out["overlap"]] == [
        ("pair", "early", pytest.approx(2 / 5))
    ]


def test_a_bad_path_is_one_line_on_stderr(cli, tmp_path, capsys) -> None:
    missing = str(tmp_path / "missing")
    assert cli(["sparsity", "diff", "--base", missing, "--tuned", missing]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: no model at")


def test_job_kinds_report_metrics_and_tables(pair, tmp_path, monkeypatch) -> None:
    """The job functions in this process (the jobs tests cover running them detached)."""
    from engine.jobs import JobContext
    from engine.sparsity.jobs import sparsity_diff, sparsity_series

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    defaults = {
        "tolerances": [1e-5, 1e-6],
        "mask_criterion": "auto",
        "ranks": False,
        "intersection": False,
    }
    (tmp_path / "job1").mkdir()
    (tmp_path / "job2").mkdir()
    ctx = JobContext(tmp_path / "job1", lambda **changes: None)
    out = sparsity_diff({"base": str(pair["base"]), "tuned": str(pair["tuned"]), **defaults}, ctx)
    assert out["changed"]["1e-05"]["changed"] == 5 and out["result_dir"]
    events = [
        json.loads(line) for line in (tmp_path / "job1" / "events.jsonl").read_text().splitlines()
    ]
    assert {e["name"] for e in events if e["type"] == "metric"} >= {
        "fraction/1e-06",
        "fraction/bf16",
    }
    assert (tmp_path / "job1" / "result" / "tensors.parquet").is_file()
    ctx = JobContext(tmp_path / "job2", lambda **changes: None)
    sparsity_series({"base": str(pair["base"]), "run_dir": str(pair["run"]), **defaults}, ctx)
    events = [
        json.loads(line) for line in (tmp_path / "job2" / "events.jsonl").read_text().splitlines()
    ]
    coverage = [(e["step"], e["value"]) for e in events if e.get("name") == "coverage"]
    assert coverage == [(1, pytest.approx(0.4)), (2, 1.0)]


def test_diff_reference_prints_the_seed_scripts_lines(cli, pair, capsys) -> None:
    args = ["sparsity", "diff", "--base", str(pair["base"]), "--tuned", str(pair["tuned"])]
    assert cli([*args, "--reference", "--tolerances", "1e-5"]) == 0
    text = capsys.readouterr().out
    assert "check_sparsity.py" in text and "bfloat16" in text
    assert "Tolerance = 1e-05 -> Fraction close to zero:" in text
    assert "Layer 1: " in text  # the up_proj of layer 1 moved
    assert cli([*args, "--reference", "--reference-dtype", "float32", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)["reference"]
    assert ref["dtype"] == "float32" and set(ref["layers"]) == {"0", "1"}
    assert ref["layers"]["0"] == 0.0 and ref["layers"]["1"] > 0
