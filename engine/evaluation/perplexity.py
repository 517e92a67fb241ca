"""Sliding-window perplexity: with stride < window every token after the first is scored once,
with at least `window - stride` tokens of context carried over (the method of the Hugging Face
perplexity guide, with exact token counts instead of its per-window averaging)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.errors import SubnetScopeError
from engine.models import LoadedModel, NeuronMask, apply_mask, input_device


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    tokens: int  # tokens scored
    windows: int
    window: int
    stride: int


def sliding_window_nll(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    *,
    window: int,
    stride: int,
    on_window: Callable[[int, int], None] | None = None,
) -> tuple[float, int, int]:
    """Summed NLL and the number of scored tokens over `input_ids` (1, n); plus windows used."""
    if not 0 < stride <= window:
        raise SubnetScopeError(f"stride must be in 1..window ({window}), got {stride}")
    n = input_ids.shape[1]
    if n < 2:
        raise SubnetScopeError("perplexity needs at least 2 tokens of text")
    starts = list(range(0, n, stride))
    total_nll, total_tokens, prev_end, used = 0.0, 0, 0, 0
    for begin in starts:
        end = min(begin + window, n)
        ids = input_ids[:, begin:end]  # (1, L)
        labels = ids.clone()
        labels[:, : max(0, prev_end - begin)] = -100  # already scored by an earlier window
        with torch.inference_mode():
            logits = model(input_ids=ids).logits  # (1, L, vocab)
        shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
        total_nll += F.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]),
            shift_labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        ).item()
        total_tokens += int((shift_labels != -100).sum())
        used += 1
        prev_end = end
        if on_window:
            on_window(end, n)
        if end == n:
            break
    return total_nll, total_tokens, used


def perplexity(
    loaded: LoadedModel,
    text: str,
    *,
    max_tokens: int = 2048,
    window: int = 512,
    stride: int = 256,
    mask: NeuronMask | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> PerplexityResult:
    """Perplexity of the first `max_tokens` tokens of `text`, optionally under a neuron mask."""
    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    window = min(window, limit) if limit else window
    stride = min(stride, window)
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"][:, :max_tokens]
    ids = ids.to(loaded.device)
    with apply_mask(loaded, mask):
        nll, tokens, used = sliding_window_nll(
            loaded.model, ids, window=window, stride=stride, on_window=on_window
        )
    mean = nll / tokens
    return PerplexityResult(math.exp(mean), mean, tokens, used, window, stride)


def texts_perplexity(
    model: torch.nn.Module, tokenizer, texts: list[str], *, max_length: int = 256
) -> PerplexityResult:
    """Perplexity over several short texts, each scored on its own (no context across texts):
    the held-out task examples and general paragraphs of a fine-tuning run."""
    if not texts:
        raise SubnetScopeError("no texts to score")
    device = input_device(model)
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    max_length = min(max_length, limit) if isinstance(limit, int) else max_length
    total_nll, total_tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
            ids = ids["input_ids"].to(device)  # (1, L)
            if ids.shape[1] < 2:
                continue
            with torch.inference_mode():
                logits = model(input_ids=ids).logits[:, :-1].float()  # (1, L-1, vocab)
            total_nll += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"
            ).item()
            total_tokens += ids.shape[1] - 1
    finally:
        model.train(was_training)
    if total_tokens == 0:
        raise SubnetScopeError("the texts hold fewer than 2 tokens each; nothing to score")
    mean = total_nll / total_tokens
    return PerplexityResult(math.exp(mean), mean, total_tokens, len(texts), max_length, max_length)
