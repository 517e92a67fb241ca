"""`python -m engine lora blend|inspect`: a PEFT folder out, errors and geometry printed."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from tests.lora_support import make_adapter, make_adapters


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return [str(p) for p in make_adapters(tmp_path_factory.mktemp("cli"), 3)]


def test_blend_writes_a_peft_folder(folders, tmp_path, tiny_folder, capsys) -> None:
    base = tiny_folder("llama")
    out = tmp_path / "blend"
    args = ["lora", "blend", "--base", base, "--adapters", *folders, "--weights", "0.5", "-0.3"]
    args += ["0.2", "--method", "svd", "--rank", "3", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["engine"] == "lowrank" and report["rank"] == 3
    assert report["error"] == pytest.approx(report["truncation"], rel=1e-4)
    assert (out / "adapter_model.safetensors").is_file()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 3

    assert main([*args[:-1], str(tmp_path / "plain")]) == 0
    text = capsys.readouterr().out
    assert "error against the exact weighted sum" in text and "truncation" in text


def test_blend_cat_without_base_and_peft_engine(folders, tmp_path, capsys) -> None:
    args = ["lora", "blend", "--adapters", *folders, "--method", "cat", "--engine", "peft"]
    assert main([*args, "--out", str(tmp_path / "cat"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["weights"] == pytest.approx([1 / 3] * 3) and report["error"] < 1e-6


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--weights", "1", "2"], "2 weights for 3 adapters"),
        (["--method", "ties"], "needs a density"),
    ],
)
def test_blend_bad_input_is_one_line(folders, tmp_path, capsys, extra, words) -> None:
    args = ["lora", "blend", "--adapters", *folders, "--out", str(tmp_path / "x"), *extra]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_blend_against_the_wrong_base(tmp_path, tiny_folder, capsys) -> None:
    gpt2 = make_adapter(tmp_path / "g", 0, family="gpt2", targets=("c_attn",))
    args = ["lora", "blend", "--base", tiny_folder("llama"), "--adapters", str(gpt2)]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "does not have" in err and err.count("\n") == 1


def test_inspect(folders, capsys) -> None:
    assert main(["lora", "inspect", *folders, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["adapters"]) == 3 and len(report["cosine"]) == 3 * 4
    assert main(["lora", "inspect", *folders]) == 0
    text = capsys.readouterr().out
    assert "cosine over all modules" in text and "model.layers.1.self_attn.v_proj" in text


def test_inspect_missing_folder(tmp_path, capsys) -> None:
    assert main(["lora", "inspect", str(tmp_path / "none")]) == 1
    assert "no such folder" in capsys.readouterr().err
