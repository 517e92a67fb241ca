"""`python -m engine tflite ...`: inspect, ops, tensors and dump; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.tflite import open_tflite, synthetic
from engine.tflite.cli import register


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synthetic.write_demo_set(tmp_path_factory.mktemp("tflite_cli"))


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch):
    """engine.cli.main with the tflite area registered (whether or not the lead has yet)."""
    from engine import cli as engine_cli

    original = engine_cli.build_parser

    def build():
        parser = original()
        areas = parser._subparsers._group_actions[0]
        if "tflite" not in areas.choices:
            register(areas)
        return parser

    monkeypatch.setattr(engine_cli, "build_parser", build)
    return lambda *argv: engine_cli.main(["tflite", *map(str, argv)])


def run_json(main, capsys: pytest.CaptureFixture, *argv) -> object:
    assert main(*argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_plain_model(main, capsys, demo) -> None:
    data = run_json(main, capsys, "inspect", demo["multi_subgraph"])
    assert data["format"] == "tflite"
    assert [(s["name"], s["num_ops"], s["num_tensors"]) for s in data["subgraphs"]] == [
        ("encode", 2, 5),
        ("decode", 2, 4),
    ]
    assert data["subgraphs"][0]["inputs"][0]["name"] == "encode_x"
    assert [s["key"] for s in data["signatures"]] == ["encode", "decode"]
    assert data["op_histogram"] == {"MUL": 1, "ADD": 1, "FULLY_CONNECTED": 1, "TANH": 1}
    assert main("inspect", demo["mlp"]) == 0
    assert "signature 'serving_default'" in capsys.readouterr().out


def test_inspect_bundles_summarise_each_section(main, capsys, demo) -> None:
    for key in ("task", "litertlm"):
        data = run_json(main, capsys, "inspect", demo[key])
        assert data["format"] == key
        models = [s for s in data["sections"] if s["kind"] == "tflite"]
        assert [s["name"] for s in models] == [
            "TF_LITE_PREFILL_DECODE",
            "TF_LITE_EMBEDDER",
            "TF_LITE_PER_LAYER_EMBEDDER",
        ]
        decoder = models[0]["model"]
        assert decoder["subgraphs"][0]["num_ops"] > 300
        assert decoder["op_histogram"]["FULLY_CONNECTED"] > 40
        assert all("model" not in s for s in data["sections"] if s["kind"] != "tflite")


def test_ops_and_tensors_filter(main, capsys, demo) -> None:
    rows = run_json(main, capsys, "ops", demo["quantized"], "--type", "dequantize")
    assert len(rows) == 6 and {r["opcode"] for r in rows} == {"DEQUANTIZE"}
    assert rows[1]["inputs"] == ["dense_int4/kernel"]
    rows = run_json(main, capsys, "ops", demo["task"], "--section", "TF_LITE_EMBEDDER")
    assert [(r["section"], r["opcode"]) for r in rows] == [("TF_LITE_EMBEDDER", "GATHER")]
    rows = run_json(main, capsys, "tensors", demo["task"], "--pattern", r"laurel/linear_")
    assert {r["section"] for r in rows} == {"TF_LITE_PREFILL_DECODE"}
    assert len(rows) == 8 and all(r["bytes"] > 0 for r in rows)
    rows = run_json(main, capsys, "tensors", demo["quantized"], "--pattern", "int8/kernel$")
    assert {r["quantization"] for r in rows} == {
        "per-channel ×6 (axis 0)",
        "per-channel ×6 (axis 1)",
    }
    assert main("tensors", demo["gemma3n_like"], "--pattern", "altup/streams") == 0
    assert "altup/streams_in" in capsys.readouterr().out


def test_dump_npy_and_safetensors(main, capsys, demo, tmp_path) -> None:
    from safetensors.numpy import load_file

    out = tmp_path / "w.safetensors"
    assert main("dump", demo["quantized"], "--pattern", "kernel$", "--out", out) == 0
    assert "wrote 4 tensors" in capsys.readouterr().out
    reader = open_tflite(demo["quantized"])
    for key, array in load_file(out).items():
        np.testing.assert_array_equal(array, reader.tensor_array(0, key))
    folder = tmp_path / "npy"
    argv = ["dump", demo["task"], "--section", "TF_LITE_PREFILL_DECODE", "--out", folder]
    assert main(*argv, "--tensor", "layer_0/laurel/linear_left/w", "--raw") == 0
    (npy,) = folder.glob("*.npy")
    assert np.load(npy).shape == (4, 32)


def test_bad_input_is_one_line_without_traceback(main, capsys, demo, tmp_path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(demo["mlp"].read_bytes()[:100])
    for argv in (
        ("inspect", bad),
        ("inspect", tmp_path / "missing.tflite"),
        ("ops", demo["task"], "--section", "nope"),
        ("tensors", demo["mlp"], "--pattern", "("),
        ("dump", demo["task"], "--all", "--out", tmp_path / "o"),
        ("dump", demo["mlp"], "--tensor", "mlp/add", "--out", tmp_path / "o"),
    ):
        assert main(*argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err


def test_findings_and_diff_commands(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys

    from engine.paths import PROJECT_ROOT
    from engine.tflite.synthetic import write_demo_set

    files = write_demo_set(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "engine", "tflite", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    found = json.loads(cli("findings", str(files["task"]), "--json").stdout)
    decoder = next(v["findings"] for k, v in found.items() if k.endswith("TF_LITE_PREFILL_DECODE"))
    assert {"ffn_widths", "altup", "laurel", "tied_embedding"} <= {f["kind"] for f in decoder}
    assert all(
        f["evidence_ops"] or f["evidence_tensors"] or f["confidence"] == "low" for f in decoder
    )
    same = json.loads(cli("diff", str(files["mlp"]), str(files["mlp"]), "--json").stdout)
    assert same["identical"] is True
    other = json.loads(cli("diff", str(files["mlp"]), str(files["quantized"]), "--json").stdout)
    assert other["identical"] is False and other["summary"]["ops"]["added"] > 0
    missing = cli("diff", str(tmp_path / "nope.tflite"), str(files["mlp"]))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "Traceback" not in missing.stderr


def test_numbered_names_fold_into_one_entry():
    from engine.tflite.cli import numbered_runs

    kv = [(f"kv_cache_k_{i}", "[1, 3, 128, 64]") for i in range(30)]
    assert numbered_runs([("tokens", "[1, 1]"), *kv, ("kv_cache_k_31", "[1, 3, 128, 64]")]) == [
        "tokens [1, 1]",
        "kv_cache_k_{0..29,31} [1, 3, 128, 64]",
    ]
    assert numbered_runs([("a_1_out", ""), ("a_2_out", ""), ("b", "")]) == ["a_{1..2}_out", "b"]
    # same name pattern, different shapes: kept apart
    assert numbered_runs([("x_0", "[1]"), ("x_1", "[2]")]) == ["x_0 [1]", "x_1 [2]"]


def test_inspect_folds_kv_caches_and_composites_of_a_converted_model(capsys):
    from engine.cli import main
    from tests.converted_support import converted

    sample = converted("qwen2-tiny")
    assert main(["tflite", "inspect", str(sample.tflite)]) == 0
    out = capsys.readouterr().out
    assert "decode_kv_cache_k_{0..2} [1, 2, 128, 16]" in out
    assert "subgraphs 'odml.rms_norm.impl*' (composite decompositions" in out
    assert "kv_cache_k_{0..2}, kv_cache_v_{0..2}" in out
