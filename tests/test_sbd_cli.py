"""`python -m engine sbd train|evaluate|show` and `models generate --sbd`: submitted params,
runs here, the trade-off table of a finished run, and one-line errors."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.jobs import api
from engine.sbd.config import EVAL_KIND, TRAIN_KIND
from tests.job_support import hold_local_jobs
from tests.sbd_support import run_tiny_sbd, save_tiny_sbd


def _json(capsys, argv: list[str]):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    return capsys.readouterr().err


def test_train_submits_key_values_over_a_params_object(capsys, job_cache, monkeypatch) -> None:
    hold_local_jobs(monkeypatch)
    argv = ["sbd", "train", "steps=5", "block-sizes=4-8", "thresholds=[0.1, 0.5]", "lora=true"]
    assert main([*argv, "--params", '{"lr": 0.001, "steps": 9}']) == 0
    job_id = capsys.readouterr().out.strip()
    [view] = api.list_jobs(kind=TRAIN_KIND)
    assert view.id == job_id
    params = view.spec.params
    assert params["steps"] == 5 and params["lr"] == 0.001 and params["block_sizes"] == "4-8"
    assert params["thresholds"] == [0.1, 0.5] and params["lora"] is True


def test_train_refuses_bad_options_before_submitting(capsys, job_cache, monkeypatch) -> None:
    hold_local_jobs(monkeypatch)
    assert "error: sbd train: unknown key stepz" in _error(capsys, ["sbd", "train", "stepz=5"])
    assert "block_sizes is a range" in _error(capsys, ["sbd", "train", "block_sizes=1-4"])
    assert "options are key=value" in _error(capsys, ["sbd", "train", "steps"])
    assert api.list_jobs(kind=TRAIN_KIND) == []


def test_evaluate_submits_its_params(capsys, job_cache, monkeypatch) -> None:
    hold_local_jobs(monkeypatch)
    out = _json(
        capsys, ["sbd", "evaluate", "demo", "--thresholds", "0.35", "0.1", "--ntp-first", "--json"]
    )
    [view] = api.list_jobs(kind=EVAL_KIND)
    assert out["job"] == view.id and view.spec.params["run"] == "demo"
    assert view.spec.params["thresholds"] == [0.1, 0.35] and view.spec.params["ntp_first"]
    assert "thresholds are entropy bounds" in _error(
        capsys, ["sbd", "evaluate", "demo", "--thresholds", "-1"]
    )


def test_show_without_a_finished_run_is_one_error(capsys, job_cache) -> None:
    assert _error(capsys, ["sbd", "show"]).startswith("error: no finished evaluation of any SBD")


def test_train_evaluate_and_show_on_a_tiny_model(capsys, job_cache, tiny_folder, monkeypatch):
    hold_local_jobs(monkeypatch)
    run = run_tiny_sbd(tiny_folder("llama"))
    shown = _json(capsys, ["sbd", "show", "--json"])
    assert shown["job"] == run and shown["kind"] == TRAIN_KIND
    assert [r["method"] for r in shown["rows"]] == ["autoregressive", "sbd", "sbd"]
    assert shown["rows"][0]["threshold"] is None and shown["rows"][0]["forwards_per_token"] == 1
    out = job_cache / "here"
    argv = ["sbd", "evaluate", run[:22], "--here", "--out", str(out), "--eval-examples", "2"]
    assert main([*argv, "--thresholds", "0.5", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "forward passes per generated token" in printed and "autoregressive" in printed
    assert (out / "result" / "evaluation.parquet").is_file()
    assert main(["sbd", "show", run]) == 0
    assert f"SBD fine-tune, 3 steps, k 2-16 · {run}" in capsys.readouterr().out


def test_train_here_writes_a_run_folder(capsys, job_cache, tiny_folder) -> None:
    from tests.sbd_support import TINY_RUN

    out = job_cache / "here-train"
    options = [f"{k}={json.dumps(v)}" for k, v in {**TINY_RUN, "eval_examples": 2}.items()]
    argv = ["sbd", "train", *options, f"model={tiny_folder('llama')}", "--here", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "fewer forward passes" in printed or "no threshold kept" in printed
    assert (out / "result" / "model" / "config.json").is_file()
    assert (out / "result" / "evaluation.parquet").is_file()


@pytest.fixture
def sbd_folder(tmp_path):
    save_tiny_sbd(tmp_path)
    return str(tmp_path)


def test_models_generate_sbd_prints_the_passes(capsys, sbd_folder) -> None:
    argv = ["models", "generate", sbd_folder, "--prompt", "What is 1 + 2?", "--chat", "off"]
    out = _json(capsys, [*argv, "--sbd", "--block-size", "4", "--threshold", "50", "--json"])
    assert out["method"] == "sbd" and out["block_size"] == 4 and out["threshold"] == 50
    assert len(out["passes"]) == len(out["token_ids"]) == len(out["pieces"])
    produced = len(out["token_ids"]) + out["stopped_at_eos"]
    assert out["tokens_per_forward"] == pytest.approx(produced / out["forwards"])
    assert main([*argv, "--sbd", "--max-new-tokens", "8"]) == 0
    captured = capsys.readouterr()
    assert "forward passes" in captured.err and "tokens/forward" in captured.err
    sums = ["models", "generate", sbd_folder, "--prompt", "What is 1 + 2?", "--sbd", "--json"]
    rendered = _json(capsys, [*sums, "--template", "basic", "--max-new-tokens", "2"])
    assert rendered["prompt"] == "What is 1 + 2?\n"  # the basic template's prompt
    assert "unknown prompt template 'nope'" in _error(capsys, [*sums, "--template", "nope"])
    assert "--json, --template and --ntp-first go with --sbd" in _error(capsys, [*argv, "--json"])
    assert "greedy" in _error(capsys, [*argv, "--sbd", "--temperature", "0.7"])


def test_models_generate_sbd_refuses_a_model_without_the_mask_token(capsys, tiny_folder):
    argv = ["models", "generate", tiny_folder("llama"), "--prompt", "hi", "--chat", "off", "--sbd"]
    assert "is not SBD-trained" in _error(capsys, argv)
