"""Sliding-window perplexity against transformers' own loss (the independent reference)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.evaluation import perplexity, sliding_window_nll
from engine.models import NeuronMask

TEXT = "The quick brown fox jumps over the lazy dog. " * 3


def _ids(loaded) -> torch.Tensor:
    return loaded.tokenizer(TEXT, return_tensors="pt")["input_ids"][:, :60]  # (1, 60)


def _hf_mean_loss(model, ids: torch.Tensor) -> float:
    with torch.inference_mode():
        return model(input_ids=ids, labels=ids).loss.item()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_one_window_equals_the_full_sequence_loss(tiny_models, family) -> None:
    model = tiny_models[family].model
    ids = _ids(tiny_models[family])
    nll, tokens, windows = sliding_window_nll(model, ids, window=64, stride=64)
    assert (tokens, windows) == (59, 1)
    assert nll / tokens == pytest.approx(_hf_mean_loss(model, ids), rel=1e-5)


def test_disjoint_windows_equal_per_chunk_losses(tiny_models) -> None:
    model = tiny_models["llama"].model
    ids = _ids(tiny_models["llama"])
    nll, tokens, windows = sliding_window_nll(model, ids, window=20, stride=20)
    chunks = [ids[:, i : i + 20] for i in range(0, 60, 20)]
    # Disjoint windows: each chunk starts without context, so its first token goes unscored.
    reference = sum(_hf_mean_loss(model, c) * 19 for c in chunks)
    assert windows == 3
    assert tokens == 57
    assert nll == pytest.approx(reference, rel=1e-5)


def test_overlapping_windows_score_every_token_once(tiny_models) -> None:
    model = tiny_models["qwen2"].model
    ids = _ids(tiny_models["qwen2"])
    for window, stride in [(16, 4), (16, 8), (32, 5), (60, 1)]:
        nll, tokens, _ = sliding_window_nll(model, ids, window=window, stride=stride)
        assert tokens == 59, (window, stride)
        assert math.isfinite(nll)


@pytest.mark.slow
def test_more_context_never_hurts_a_model_much(demo_model) -> None:
    # On a real model, carried-over context lowers perplexity: a sanity check of the method.
    text = " ".join(["The history of the Roman Empire spans many centuries."] * 30)
    short = perplexity(demo_model, text, max_tokens=256, window=32, stride=16)
    long = perplexity(demo_model, text, max_tokens=256, window=128, stride=16)
    assert long.tokens == short.tokens == 255
    assert long.perplexity < short.perplexity


def test_a_mask_changes_perplexity_and_is_reverted(tiny_models) -> None:
    loaded = tiny_models["llama"]
    plain = perplexity(loaded, TEXT, max_tokens=60, window=64, stride=64)
    mask = NeuronMask.from_pairs([(layer, n) for layer in (0, 1) for n in range(48)])
    masked = perplexity(loaded, TEXT, max_tokens=60, window=64, stride=64, mask=mask)
    again = perplexity(loaded, TEXT, max_tokens=60, window=64, stride=64)
    assert masked.perplexity != plain.perplexity
    assert again.perplexity == plain.perplexity


def test_bad_arguments_are_clear_errors(tiny_models) -> None:
    model = tiny_models["llama"].model
    with pytest.raises(SubnetScopeError, match="stride must be in 1..window"):
        sliding_window_nll(model, _ids(tiny_models["llama"]), window=8, stride=9)
    with pytest.raises(SubnetScopeError, match="at least 2 tokens"):
        sliding_window_nll(model, torch.tensor([[1]]), window=8, stride=4)
