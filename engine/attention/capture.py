"""Per-head attention statistics and maps, recomputed from the model's own queries and keys.

The hook sits on the attention function (engine/models/attention_calls.py), so it sees q and k
after RoPE and QK-norm, the scaling, any soft-capping and the very mask the layer uses (a local
layer's sliding window included), whatever the implementation (sdpa or eager). It recomputes the
attention rows in float32 in blocks of query rows of at most `block_bytes` of scores and reduces
each block at once: nothing O(T²) outlives a block, and no layer's map is kept unless asked for.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from engine.attention.config import STATS
from engine.attention.layout import attention_layout
from engine.attention.modules import attention_modules, check_layers
from engine.errors import SubnetScopeError
from engine.models.attention_calls import keep_matrix
from engine.models.devices import input_device
from engine.models.hooks import scoped_hooks
from engine.models.loading import LoadedModel

DEFAULT_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class HeadStats:
    # One row per (layer, head): layer, head, kind, entropy, distance, window_share, sink, rows.
    frame: pd.DataFrame
    window: int  # the w of window_share
    texts: int
    tokens: int
    largest_block_bytes: int  # the largest score block held at once: the memory bound


@dataclass(frozen=True)
class AttentionMap:
    tokens: list[str]
    layer: int
    probs: np.ndarray  # (heads, T, T) float32; row = query, column = key


def _rows(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None,
    kwargs: dict,
    block_bytes: int,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(first query row, its absolute positions, attention rows (heads, rows, k_len)) per block."""
    if query.shape[0] != 1:
        raise SubnetScopeError("attention statistics read one text at a time (batch of 1)")
    heads, q_len, _ = query.shape[1:]
    k_len = key.shape[2]
    q = query[0].float()
    k = key[0].float().repeat_interleave(heads // key.shape[1], dim=0)  # GQA: (heads, k_len, d)
    keep = keep_matrix(mask, q_len, k_len, query.device)[0, 0]  # (q_len, k_len)
    scaling = kwargs.get("scaling")
    scaling = q.shape[-1] ** -0.5 if scaling is None else float(scaling)
    softcap = kwargs.get("softcap")
    block = max(1, block_bytes // (heads * k_len * 4))
    for start in range(0, q_len, block):
        stop = min(q_len, start + block)
        scores = torch.matmul(q[:, start:stop], k.transpose(1, 2)) * scaling  # (h, rows, k)
        if softcap:
            scores = torch.tanh(scores / softcap) * softcap
        scores = scores.masked_fill(~keep[start:stop], float("-inf"))
        positions = torch.arange(start, stop, device=q.device) + (k_len - q_len)
        yield start, positions, torch.softmax(scores, dim=-1)


class _StatsSink:
    """Sums of each statistic per (layer, head) over the query rows seen."""

    def __init__(self, window: int, block_bytes: int) -> None:
        self.window = window
        self.block_bytes = block_bytes
        self.sums: dict[int, torch.Tensor] = {}  # layer -> (4, heads) float64
        self.rows: dict[int, int] = {}
        self.largest = 0

    def hook(self, module: nn.Module, query, key, value, mask, kwargs) -> None:
        layer = module.layer_idx
        total = torch.zeros(len(STATS), query.shape[1], dtype=torch.float64)
        counted = 0
        for _, positions, probs in _rows(query, key, mask, kwargs, self.block_bytes):
            self.largest = max(self.largest, probs.numel() * probs.element_size())
            used = positions >= 1  # position 0 can only attend to itself
            if not used.any():
                continue
            probs = probs[:, used]  # (heads, rows, k)
            distance = (positions[used][:, None] - torch.arange(probs.shape[-1])[None, :]).float()
            entropy = -torch.special.xlogy(probs, probs).sum(-1)  # (heads, rows)
            mean_distance = (probs * distance).sum(-1)
            inside = (probs * (distance < self.window)).sum(-1)
            sink = probs[..., 0]
            stacked = torch.stack([entropy, mean_distance, inside, sink])  # (4, heads, rows)
            total += stacked.sum(-1).double()
            counted += int(used.sum())
        self.sums[layer] = self.sums.get(layer, 0) + total
        self.rows[layer] = self.rows.get(layer, 0) + counted


def _forward(loaded: LoadedModel, ids: torch.Tensor) -> None:
    kwargs = {"input_ids": ids, "use_cache": False}
    if "logits_to_keep" in inspect.signature(loaded.model.forward).parameters:
        kwargs["logits_to_keep"] = 1  # the statistics need no (T, vocab) logits
    with torch.inference_mode():
        loaded.model(**kwargs)


def _token_ids(tokenizer, text: str, max_tokens: int, device) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)
    return ids["input_ids"].to(device)


def _check_length(loaded: LoadedModel, max_tokens: int) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
        raise SubnetScopeError(f"max_tokens must be a whole number ≥ 2, got {max_tokens!r}")
    config = loaded.model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0)
    if limit and max_tokens > limit:
        raise SubnetScopeError(
            f"max_tokens {max_tokens} is more than {loaded.display_name} was built for "
            f"({limit} positions)"
        )


def head_stats(
    loaded: LoadedModel,
    texts: list[str],
    *,
    window: int = 32,
    max_tokens: int = 512,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    tokenizer: object | None = None,
    on_text: Callable[[int, int], None] | None = None,
) -> HeadStats:
    """Entropy, mean distance, share inside `window` and first-token mass of every head, each the
    mean over query positions 1..T-1 of every text (texts run one at a time, cut to max_tokens).

    Per call like every capture: open `apply_lora` or `localized` around it for tuned or
    localized statistics. `tokenizer` replaces the model's own (a checkpoint compared with its
    base reads the same token ids)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise SubnetScopeError(f"the window must be a whole number of tokens ≥ 1, got {window!r}")
    if block_bytes < 1:
        raise SubnetScopeError("block_bytes must be positive")
    _check_length(loaded, max_tokens)
    if not texts or not any(t.strip() for t in texts):
        raise SubnetScopeError("no texts to read attention on")
    modules = attention_modules(loaded)
    sink = _StatsSink(window, block_bytes)
    tokenizer = tokenizer or loaded.tokenizer
    device = input_device(loaded.model)
    used_texts, tokens = 0, 0
    hooks = [(module, "attention", sink.hook) for module in modules.values()]
    with scoped_hooks(loaded, hooks, name="attention capture"):
        for index, text in enumerate(texts):
            ids = _token_ids(tokenizer, text, max_tokens, device) if text.strip() else None
            if ids is not None and ids.shape[1] >= 2:
                _forward(loaded, ids)
                used_texts += 1
                tokens += int(ids.shape[1])
            if on_text:
                on_text(index + 1, len(texts))
    if not used_texts:
        raise SubnetScopeError("every text is shorter than 2 tokens; nothing to read")
    kinds = {entry.layer: entry.kind for entry in attention_layout(loaded.model.config)}
    records = []
    for layer, sums in sorted(sink.sums.items()):
        means = (sums / max(sink.rows[layer], 1)).numpy()
        for head in range(means.shape[1]):
            records.append(
                {
                    "layer": layer,
                    "head": head,
                    "kind": kinds.get(layer, "global"),
                    **{stat: float(means[i, head]) for i, stat in enumerate(STATS)},
                    "rows": sink.rows[layer],
                }
            )
    return HeadStats(pd.DataFrame(records), window, used_texts, tokens, sink.largest)


def attention_map(
    loaded: LoadedModel, text: str, layer: int, *, max_tokens: int = 256
) -> AttentionMap:
    """Every head's attention rows in one layer for one text (heads, T, T)."""
    _check_length(loaded, max_tokens)
    if not text.strip():
        raise SubnetScopeError("the text is empty")
    modules = attention_modules(loaded)
    check_layers(modules, [layer])
    ids = _token_ids(loaded.tokenizer, text, max_tokens, input_device(loaded.model))
    if ids.shape[1] < 1:
        raise SubnetScopeError("the text holds no tokens")
    captured: list[torch.Tensor] = []

    def hook(module, query, key, value, mask, kwargs) -> None:
        blocks = [probs for _, _, probs in _rows(query, key, mask, kwargs, DEFAULT_BLOCK_BYTES)]
        captured.append(torch.cat(blocks, dim=1))

    with scoped_hooks(loaded, [(modules[layer], "attention", hook)], name="attention capture"):
        _forward(loaded, ids)
    tokens = [loaded.tokenizer.decode([int(i)]) for i in ids[0]]
    return AttentionMap(tokens, layer, captured[0].cpu().numpy().astype(np.float32))
