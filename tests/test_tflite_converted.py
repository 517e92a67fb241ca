"""The converter-made samples' builder (engine/tflite/converted): keys, the cache, the converter
run and its failure, the CLI and the job kind. The real conversions run in CI through
scripts/build_converted_samples.sh; the recovery and weight tests check what they wrote."""

from __future__ import annotations

import json
import stat
from dataclasses import replace

import pytest

from engine.errors import SubnetScopeError
from engine.tflite.converted import build
from engine.tflite.converted.specs import SAMPLES, sample_spec

TINY = replace(
    sample_spec("qwen2-tiny"),
    name="qwen2-test",
    config={**sample_spec("qwen2-tiny").config, "vocab_size": 49152, "num_hidden_layers": 1},
)


def fake_converter(tmp_path, body: str):
    """A stand-in for the converter's Python: called as `python convert_hf.py SOURCE OUT OPTS`."""
    script = tmp_path / "fake-python"
    script.write_text('#!/bin/sh\nout="$3"\n' + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBNETSCOPE_CONVERTED_CACHE", str(tmp_path / "store"))
    monkeypatch.setattr(build, "SAMPLES", (*SAMPLES, TINY))
    return tmp_path


def test_keys_name_what_a_sample_is_made_of():
    keys = [spec.key for spec in SAMPLES]
    assert len(set(keys)) == len(keys)
    assert TINY.key != sample_spec("qwen2-tiny").key
    assert replace(TINY, quantization="dynamic_wi8_afp32").key != TINY.key
    assert sample_spec("gemma3-tiny").key == sample_spec("gemma3-tiny").key
    with pytest.raises(KeyError, match="known: smollm2-135m-fp32"):
        sample_spec("nope")


def test_a_build_runs_the_converter_once_and_keeps_its_manifest(store, monkeypatch):
    ok = fake_converter(
        store,
        'touch "$out/model.tflite" "$out/model.litertlm"\n'
        'echo \'{"converter": "litert-torch", "version": "0.10.0", "seconds": 1}\''
        ' > "$out/converter.json"\n'
        'echo "$4" > "$out/options.json"\n',
    )
    monkeypatch.setenv("SUBNETSCOPE_CONVERTER_PYTHON", str(ok))
    sample = build.build_sample(TINY)
    assert sample.folder == build.sample_dir(TINY) and sample.tflite.is_file()
    assert json.loads((sample.folder / "options.json").read_text())["quantization_recipe"] == "none"
    assert (sample.hf_folder() / "config.json").is_file()  # the random-config source is kept
    assert json.loads((sample.hf_folder() / "config.json").read_text())["num_hidden_layers"] == 1
    assert sample.manifest["key"] == TINY.key and "model.litertlm" in sample.manifest["files"]
    monkeypatch.setenv("SUBNETSCOPE_CONVERTER_PYTHON", str(store / "missing"))
    assert build.build_sample(TINY).manifest == sample.manifest  # built: not converted again
    assert [s.spec.name for s in build.built_samples(["qwen2-test"])] == ["qwen2-test"]


def test_a_failed_conversion_says_why_and_leaves_nothing(store, monkeypatch):
    broken = fake_converter(store, 'echo "ValueError: unsupported op" >&2\nexit 3\n')
    monkeypatch.setenv("SUBNETSCOPE_CONVERTER_PYTHON", str(broken))
    with pytest.raises(SubnetScopeError, match="the converter failed on 'qwen2-test'") as err:
        build.build_sample(TINY)
    assert "unsupported op" in str(err.value)
    assert not build.sample_dir(TINY).exists()
    with pytest.raises(SubnetScopeError, match="is not built"):
        build.converted_sample("qwen2-test")
    with pytest.raises(SubnetScopeError, match="no converter sample named nope"):
        build.build_samples(["nope"])


def test_the_cli_lists_every_sample(store, capsys):
    from engine.cli import main

    assert main(["tflite", "samples", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["converter"] == "litert-torch 0.10.0"
    assert [s["name"] for s in listed["samples"]] == [s.name for s in SAMPLES]
    assert not any(s["built"] for s in listed["samples"])
    assert main(["tflite", "samples"]) == 0
    assert "tflite samples --build" in capsys.readouterr().out


def test_the_explorer_lists_built_samples(store, monkeypatch):
    from engine.tflite.samples import list_tflite_files, tflite_roots

    assert build.converted_root() in tflite_roots()
    folder = build.sample_dir(TINY)
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(b"")
    (folder / "hf").mkdir()
    assert folder / "model.tflite" in list_tflite_files([build.converted_root()])


def test_the_job_kind_is_registered():
    from engine.jobs import load_kinds

    kind = load_kinds()["tflite.convert_samples"]
    assert kind.result_page == "tflite" and kind.defaults == {"names": None, "force": False}
