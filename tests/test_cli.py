"""The `python -m engine` CLI: help, inspect JSON, generate with a mask, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dashboard.serve import ROOT
from engine.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_the_areas(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "models" in out and "demo" in out


def test_inspect_json_on_a_local_folder(tmp_path, tiny_models, capsys) -> None:
    folder = tmp_path / "tiny-gpt2"
    tiny_models["gpt2"].model.save_pretrained(folder)
    tiny_models["gpt2"].tokenizer.save_pretrained(folder)
    assert main(["models", "inspect", str(folder), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["architecture"] == "GPT-2"
    assert (facts["num_layers"], facts["hidden_size"], facts["intermediate_size"]) == (2, 32, 128)
    assert facts["num_parameters"] == sum(p.numel() for p in tiny_models["gpt2"].model.parameters())
    assert facts["layers"][1]["up"] == "transformer.h.1.mlp.c_fc"
    assert facts["layers"][1]["down"] == "transformer.h.1.mlp.c_proj"
    assert facts["layers"][1]["gate"] is None


def test_errors_are_one_line_without_traceback(tmp_path) -> None:
    result = run_cli("models", "inspect", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: no model at")
    assert "Traceback" not in result.stderr

    bad_mask = tmp_path / "mask.json"
    bad_mask.write_text('{"mode": "zero", "neurons": [{"layer": 99, "neuron": 0}]}')
    folder = tmp_path / "tiny"
    result = run_cli("models", "generate", str(folder), "--prompt", "hi", "--mask", str(bad_mask))
    assert result.returncode == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_generate_on_the_demo_with_and_without_a_mask(tmp_path) -> None:
    plain = run_cli(
        "models",
        "generate",
        "demo",
        "--prompt",
        "What is the capital of France?",
        "--max-new-tokens",
        "12",
    )
    assert plain.returncode == 0, plain.stderr
    assert "Paris" in plain.stdout
    mask = tmp_path / "mask.json"
    neurons = [{"layer": layer, "neuron": n} for layer in range(30) for n in range(0, 1536, 2)]
    mask.write_text(json.dumps({"mode": "zero", "neurons": neurons}))
    masked = run_cli(
        "models",
        "generate",
        "demo",
        "--prompt",
        "What is the capital of France?",
        "--max-new-tokens",
        "12",
        "--mask",
        str(mask),
    )
    assert masked.returncode == 0, masked.stderr
    assert masked.stdout != plain.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"layer": 30, "neuron": 0}]))
    result = run_cli("models", "generate", "demo", "--prompt", "hi", "--mask", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip() == "error: mask names layer 30, but the model has layers 0..29"
