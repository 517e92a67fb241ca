"""LRP relevance through LXT: conservation, shapes, and keeping LXT's patches out of this process.

LXT patches classes process-wide (torch.nn.Dropout, torch.nn.LayerNorm) and cannot undo it, so
every test that patches runs its LRP in a subprocess that prints JSON.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from engine.attribution.lrp import lrp_relevance
from engine.attribution.lxt_compat import SUPPORTED_MODEL_TYPES, guard_process
from engine.errors import SubnetScopeError

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("llama", "gpt2", "qwen2", "gemma3")
_ORIGINAL_FORWARDS = (torch.nn.Dropout.forward, torch.nn.LayerNorm.forward)

_PRELUDE = """
import json, warnings
import torch
from engine.attribution import lxt_compat
from engine.attribution.lrp import lrp_relevance
from engine.errors import SubnetScopeError
from tests.tiny import tiny_model

warnings.filterwarnings("ignore")
TEXTS = ["Hello world, this is a test.", "The quick brown fox jumps."]


def zero_(loaded, *, attention):
    # Biases absorb LRP relevance; so does AttnLRP's softmax. Without both, LRP conserves exactly.
    with torch.no_grad():
        for name, param in loaded.model.named_parameters():
            attention_out = name.endswith(("o_proj.weight", "attn.c_proj.weight"))
            if name.endswith("bias") or (attention and attention_out):
                param.zero_()
    return loaded


def sums(relevance):
    return {"target": relevance.target_sum, "input": relevance.input_sum}
"""

_MAIN = """
out = {}
for family in FAMILIES:
    seen = []
    plain = lrp_relevance(tiny_model(family), TEXTS, on_sample=lambda d, t: seen.append([d, t]))
    kept = lrp_relevance(tiny_model(family), TEXTS, keep_weights=True)
    exact = lrp_relevance(zero_(tiny_model(family), attention=False), TEXTS)
    out[family] = {
        "plain": sums(plain),
        "without_attention": sums(exact),  # biases zeroed
        "progress": seen,
        "samples": plain.samples,
        "tokens": plain.tokens,
        "plain_weight_is_none": plain.weight is None,
        "shapes": {
            key: [list(getattr(kept, key)[layer].shape) for layer in sorted(kept.neuron)]
            for key in ("neuron", "activation", "weight")
        },
        "finite": all(
            bool(torch.isfinite(t).all())
            for part in (kept.neuron, kept.activation, kept.weight)
            for t in part.values()
        ),
        "neuron_is_weight_row_sum": all(
            torch.allclose(kept.neuron[layer], kept.weight[layer].sum(1), rtol=1e-5, atol=1e-7)
            for layer in kept.neuron
        ),
        "neuron_matches_plain_run": all(
            torch.allclose(kept.neuron[layer], plain.neuron[layer]) for layer in kept.neuron
        ),
    }
for family in ("llama", "gpt2"):
    # lrp computes ∂W from the up projection's input and output gradient; compare with autograd.
    loaded = tiny_model(family)
    kept = lrp_relevance(loaded, TEXTS[:1], keep_weights=True)
    ups = [loaded.model.get_submodule(block.up) for block in loaded.architecture.blocks]
    ids = loaded.tokenizer(TEXTS[0], return_tensors="pt").input_ids
    for up in ups:
        up.weight.requires_grad_()
    logits = loaded.model(input_ids=ids, use_cache=False).logits
    target = logits[0, :-1].gather(-1, ids[0, 1:, None]).sum()
    grads = torch.autograd.grad(target, [up.weight for up in ups])
    scores = [(up.weight * g).abs().detach() for up, g in zip(ups, grads)]
    scores = [s.t() if family == "gpt2" else s for s in scores]
    out[family]["weight_matches_autograd"] = all(
        torch.allclose(s, kept.weight[i], rtol=1e-4, atol=1e-8) for i, s in enumerate(scores)
    )
try:
    lrp_relevance(tiny_model("llama"), ["a", ""])
except SubnetScopeError as exc:
    out["short_texts_error"] = str(exc)
out["dropout_patched"] = torch.nn.Dropout.forward.__module__.startswith("lxt")
out["layernorm_patched"] = torch.nn.LayerNorm.forward.__module__.startswith("lxt")
print(json.dumps(out))
"""

# AttnLRP (LXT's default map) lets the softmax rule absorb relevance: it runs in its own process.
_ATTN_LRP = """
out = {f: sums(lrp_relevance(tiny_model(f), TEXTS, rules="attn")) for f in FAMILIES}
try:
    lrp_relevance(tiny_model("llama"), TEXTS, rules="cp")
except SubnetScopeError as exc:
    out["repatch_error"] = str(exc)
print(json.dumps(out))
"""


def run_python(code: str) -> dict:
    """Run code in a fresh interpreter with the repository importable; its last line is JSON."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def script(body: str) -> str:
    return textwrap.dedent(_PRELUDE) + f"FAMILIES = {list(FAMILIES)!r}\n" + textwrap.dedent(body)


@pytest.fixture(scope="module")
def lrp_results() -> dict:
    return run_python(script(_MAIN))


def relative_gap(sums: dict) -> float:
    return abs(sums["input"] - sums["target"]) / abs(sums["target"])


@pytest.mark.parametrize("family", FAMILIES)
def test_lrp_conserves_relevance(lrp_results, family):
    # CP-LRP (the default rules) on the whole tiny model: the input relevance sums to the explained
    # logits within 10 % (the bound); with biases zeroed, exactly.
    assert relative_gap(lrp_results[family]["plain"]) <= 0.10
    assert relative_gap(lrp_results[family]["without_attention"]) <= 1e-3


def test_attn_lrp_runs_but_is_not_conservative_and_cannot_repatch():
    results = run_python(script(_ATTN_LRP))
    for family in FAMILIES:
        assert math.isfinite(results[family]["input"]) and math.isfinite(results[family]["target"])
    assert any(relative_gap(results[f]) > 0.10 for f in FAMILIES)  # AttnLRP's softmax rule
    assert "already patched llama with attn rules" in results["repatch_error"]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_shapes_and_weight_scores(lrp_results, tiny_models, family):
    result = lrp_results[family]
    arch = tiny_models[family].architecture
    neurons = [[n] for n in arch.neurons_per_layer]
    assert result["shapes"]["neuron"] == neurons
    assert result["shapes"]["activation"] == neurons
    assert result["shapes"]["weight"] == [[n, arch.hidden_size] for n in arch.neurons_per_layer]
    assert result["finite"]
    assert result["plain_weight_is_none"]
    assert result["neuron_is_weight_row_sum"]
    assert result["neuron_matches_plain_run"]
    assert result["weight_matches_autograd"]
    assert result["samples"] == 2
    assert result["tokens"] == 28 + 26  # the char tokenizer: one token per character
    assert result["progress"] == [[1, 2], [2, 2]]


def test_texts_too_short_to_explain(lrp_results):
    assert "at least two tokens" in lrp_results["short_texts_error"]


def test_this_process_stays_unpatched(lrp_results):
    # The subprocess did patch (GPT-2 patches LayerNorm too); none of it leaked here.
    assert lrp_results["dropout_patched"]
    assert lrp_results["layernorm_patched"]
    assert (torch.nn.Dropout.forward, torch.nn.LayerNorm.forward) == _ORIGINAL_FORWARDS
    assert torch.nn.Dropout.forward.__module__ == "torch.nn.modules.dropout"
    assert torch.nn.LayerNorm.forward.__module__ == "torch.nn.modules.normalization"
    assert not any(name == "lxt" or name.startswith("lxt.") for name in sys.modules)


def test_guard_refuses_the_dashboard_process(monkeypatch, tiny_models):
    monkeypatch.setitem(sys.modules, "streamlit", types.ModuleType("streamlit"))
    with pytest.raises(SubnetScopeError, match="run it as a job"):
        guard_process()
    with pytest.raises(SubnetScopeError, match="run it as a job"):
        lrp_relevance(tiny_models["llama"], ["Hello"])


def test_unsupported_family_and_no_texts(monkeypatch, tiny_models):
    monkeypatch.delitem(sys.modules, "streamlit", raising=False)  # dashboard tests import it
    with pytest.raises(SubnetScopeError, match=r"'bert'.*supported families: Llama"):
        lrp_relevance(tiny_models["bert"], ["Hello world"])
    with pytest.raises(SubnetScopeError, match="at least one text"):
        lrp_relevance(tiny_models["llama"], [])
    assert set(SUPPORTED_MODEL_TYPES) >= {"llama", "qwen2", "qwen3", "gemma3", "gemma3_text"}
    assert not any(name == "lxt" or name.startswith("lxt.") for name in sys.modules)
