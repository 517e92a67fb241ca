"""The precision a model loads in (issue 19, item 1): the sidebar's choice reaches the shared
model and every cache of what it computed, a load that would not fit is refused before it
starts, and jobs take a `dtype` and say which one they ran in."""

from __future__ import annotations

import json

import pytest
import torch

from engine.errors import SubnetScopeError
from tests.page_support import open_page
from tests.tiny import save_tiny_folder


@pytest.fixture
def tiny_root(tmp_path):
    """A model root holding one tiny llama folder (float32 on disk); its source string."""
    save_tiny_folder(tmp_path / "models" / "tiny-llama", "llama")
    return tmp_path / "models", str(tmp_path / "models" / "tiny-llama")


def _model_page(monkeypatch, tmp_path, root, source, state=None):
    return open_page(
        monkeypatch,
        "model",
        cache=tmp_path / "cache",
        models=root,
        state={"model_source": source, **(state or {})},
        clear_resources=True,
    )


def _facts(at) -> str:
    return next(c.value for c in at.caption if " on cpu" in c.value)


def test_the_picked_precision_reaches_the_shared_model(tmp_path, monkeypatch, tiny_root):
    from dashboard import loaders

    root, source = tiny_root
    at = _model_page(monkeypatch, tmp_path, root, source)
    assert at.sidebar.selectbox(key="precision_picker").value == "auto"
    assert "float32 on cpu" in _facts(at)  # auto: the checkpoint's own dtype
    at = at.sidebar.selectbox(key="precision_picker").set_value("bf16").run()
    assert not at.exception, at.exception
    assert "bfloat16 on cpu" in _facts(at)
    assert any("parameters in bfloat16" in c.value for c in at.sidebar.caption)
    bf16 = loaders._HELD[source, "bf16"]
    assert bf16.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in bf16.model.parameters())  # one copy, in bf16
    at = at.sidebar.selectbox(key="precision_picker").set_value("fp32").run()
    assert "float32 on cpu" in _facts(at)
    assert loaders._HELD[source, "fp32"] is not bf16  # its own cache entry
    # Kept across pages, like the model.
    at.switch_page("../pages/ica.py").run()
    assert at.sidebar.selectbox(key="precision_picker").value == "fp32"


def test_auto_holds_a_bf16_checkpoint_in_bf16(tmp_path):
    from dashboard.loaders import shared_model

    folder = tmp_path / "tiny-bf16"
    loaded = save_tiny_folder(folder, "llama")
    loaded.model.to(torch.bfloat16).save_pretrained(folder)  # a bf16 checkpoint
    held = shared_model(str(folder), "auto")
    assert {p.dtype for p in held.model.parameters()} == {torch.bfloat16}  # not an fp32 copy
    assert shared_model(str(folder), "auto") is held  # one copy, whoever asks


def test_a_link_names_the_precision_and_a_bad_one_is_ignored(tmp_path, monkeypatch, tiny_root):
    from streamlit.testing.v1 import AppTest

    from tests.page_support import APP

    root, source = tiny_root
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SUBNETSCOPE_MODEL_ROOTS", str(root))
    for value, expected in (("bf16", "bf16"), ("int4", "auto")):
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["model_source"] = source
        at.query_params["dtype"] = value
        at.run()
        at.switch_page("../pages/model.py").run()
        assert not at.exception, at.exception
        assert at.sidebar.selectbox(key="precision_picker").value == expected
        warned = [w.value for w in at.warning if "dtype=" in w.value]
        assert bool(warned) == (value == "int4")


def test_a_load_that_would_not_fit_is_refused_in_one_sentence(tmp_path, monkeypatch, tiny_root):
    from dashboard import loaders

    root, source = tiny_root
    loads = []
    monkeypatch.setattr(loaders, "free_bytes", lambda device: 1024)
    monkeypatch.setattr(loaders, "load_model", lambda *a, **k: loads.append(a) or 1 / 0)
    at = _model_page(monkeypatch, tmp_path, root, source)
    assert loads == []  # refused from the plan: nothing was loaded
    [error] = at.error
    assert "would not fit" in error.value and "\n" not in error.value
    assert any("would not fit" in c.value for c in at.sidebar.caption)


def test_a_job_launched_from_a_page_runs_in_the_sessions_precision(
    tmp_path, monkeypatch, tiny_root
):
    from engine.jobs import get_job
    from tests.job_support import hold_local_jobs

    hold_local_jobs(monkeypatch)
    root, source = tiny_root
    at = _model_page(monkeypatch, tmp_path, root, source, state={"model_dtype": "bf16"})
    at.button(key="ppl_job_submit").click().run()
    assert not at.exception, at.exception
    params = get_job(at.session_state["ppl_job"]).spec.params
    assert params["model"] == source and params["dtype"] == "bf16"


def test_cached_views_take_the_dtype_in_their_key():
    """Every cached function of the dashboard that reaches the shared model is keyed by dtype."""
    import inspect
    import pkgutil

    import dashboard

    modules = [dashboard] + [
        __import__(m.name, fromlist=["_"])
        for m in pkgutil.walk_packages(dashboard.__path__, "dashboard.")
        if m.name not in ("dashboard.app", "dashboard.serve")
    ]
    checked = 0
    for module in modules:
        for name, value in vars(module).items():
            func = getattr(value, "__wrapped__", None)
            if func is None or func.__module__ != module.__name__:
                continue
            if "shared_model(" in inspect.getsource(func) or name == "_held_model":
                assert "dtype" in inspect.signature(func).parameters, f"{module.__name__}.{name}"
                checked += 1
    assert checked >= 6


def _text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("The cat sat on the mat.\n\nA dog ran in the park.\n", encoding="utf-8")
    return str(path)


def test_a_job_loads_in_the_dtype_it_is_given_and_says_so(tmp_path, ctx, tiny_folder):
    from engine.evaluation.jobs import eval_perplexity

    params = {
        "model": tiny_folder("llama"),
        "text": _text_file(tmp_path),
        "max_tokens": 24,
        "stride": 8,
        "window": 16,
        "mask": None,
    }
    result = eval_perplexity({**params, "dtype": "bf16"}, ctx)
    assert result["dtype"] == "bfloat16"
    written = json.loads((ctx.result_dir / "perplexity.json").read_text())
    assert written["dtype"] == "bfloat16"
    assert eval_perplexity(params, ctx)["dtype"] == "float32"  # auto: as stored
    with pytest.raises(SubnetScopeError, match="unknown dtype 'int8'; use one of auto, bf16"):
        eval_perplexity({**params, "dtype": "int8"}, ctx)


def test_the_neuron_job_records_its_dtype(tmp_path, ctx, tiny_folder):
    from engine.neurons.jobs import activations_job

    params = {"model": tiny_folder("llama"), "dataset": _text_file(tmp_path), "samples": 2}
    result = activations_job({**params, "max_length": 8, "dtype": "bf16"}, ctx)
    assert result["dtype"] == "bfloat16"
    meta = json.loads((ctx.result_dir / "meta.json").read_text())
    assert meta["dtype"] == "bfloat16"
    with pytest.raises(SubnetScopeError, match="unknown dtype"):
        activations_job({**params, "dtype": "q4"}, ctx)


def test_training_jobs_map_dtype_to_their_precision():
    from engine.training.config import LoRARunConfig, SFTRunConfig
    from engine.training.jobs import FIXED_FP32, _ran_in, _with_dtype

    assert _with_dtype(SFTRunConfig, {"dtype": "bf16"}, "sft") == ({"precision": "bf16"}, True)
    assert _with_dtype(SFTRunConfig, {"precision": "bf16"}, "sft") == ({"precision": "bf16"}, True)
    assert _with_dtype(LoRARunConfig, {"dtype": "bf16"}, "lora") == ({}, False)
    assert _ran_in({"precision": "bf16"}, True)["dtype"] == "bfloat16"
    assert _ran_in({}, False)["dtype"] == FIXED_FP32
    with pytest.raises(SubnetScopeError, match="not fp16"):
        _with_dtype(SFTRunConfig, {"dtype": "fp16"}, "sft")
    with pytest.raises(SubnetScopeError, match="disagree"):
        _with_dtype(SFTRunConfig, {"dtype": "fp32", "precision": "bf16"}, "sft")
    with pytest.raises(SubnetScopeError, match="unknown dtype"):
        _with_dtype(LoRARunConfig, {"dtype": "f8"}, "lora")


def test_the_clis_that_load_a_model_take_dtype():
    import argparse

    from engine.attribution.cli import register as attribution
    from engine.ica.cli import register as ica
    from engine.lora.cli_deltas import register as deltas

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    attribution(sub)
    ica(sub)
    deltas(sub)
    for argv in (
        ["prune", "evaluate", "--model", "m", "--neurons", "n"],
        ["prune", "causal", "--out", "o"],
        ["attribution", "compute", "--out", "o.safetensors"],
        ["ica", "build-templates", "m", "d", "--out", "o.json"],
        ["ica", "show", "f"],
        ["deltas", "--base", "b", "--adapters", "a"],
    ):
        assert parser.parse_args([*argv, "--dtype", "bf16"]).dtype == "bf16"
        assert parser.parse_args(argv).dtype == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["ica", "show", "f", "--dtype", "int8"])
