"""Set Block Decoding's mask token and attention masks (Gat, Ben-Hamu et al., arXiv 2509.04185).

Training (Fig. 9): the clean sequence (L tokens) followed by a corrupted copy with the same
position ids. Clean positions attend causally. A corrupted position in full block b (blocks of k
consecutive positions) attends to the clean positions before the block (< b·k) and to every
position of its own block, both ways; corrupted blocks never see each other, and the clean half
never sees the corrupted one. Decoding (Fig. 10): tokens not yet cached attend causally, the k
block slots attend to everything (cache, new tokens, the whole block).

The masks reach the model through the per-call attention hook (engine/models/attention_calls.py),
so any family whose attention the hook reaches trains and decodes this way with no change to its
code; a layer with a sliding window keeps its window, measured in position ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from engine.errors import SubnetScopeError
from engine.models.attention_calls import as_mask, check_scopable
from engine.models.hooks import scoped_hooks
from engine.models.loading import LoadedModel

SBD_MASK_TOKEN = "<|sbd_mask|>"  # noqa: S105 (a vocabulary token, not a secret)


def mask_token_id(tokenizer: object) -> int:
    """The id of the SBD mask token, or one clear error for a tokenizer without one."""
    token_id = tokenizer.convert_tokens_to_ids(SBD_MASK_TOKEN)  # type: ignore[attr-defined]
    unknown = getattr(tokenizer, "unk_token_id", None)
    if token_id is None or (unknown is not None and token_id == unknown):
        raise SubnetScopeError(
            f"this model is not SBD-trained: its tokenizer has no {SBD_MASK_TOKEN} token "
            "(train one with `python -m engine sbd train`)"
        )
    return int(token_id)


def block_index(length: int, block: int) -> torch.Tensor:
    """(length,) the block of each position; -1 for the tail after the last full block."""
    positions = torch.arange(length)
    full = (length // block) * block
    return torch.where(positions < full, positions // block, torch.full_like(positions, -1))


def training_keep(valid: torch.Tensor, block: int) -> torch.Tensor:
    """(B, 1, 2L, 2L) bool, True = attend, for [clean ; corrupted] with `valid` (B, L) marking
    real tokens (right padding). Padding keys are hidden from everyone; every query keeps itself
    so no row is empty (padding rows and the tail after the last full block carry no loss and no
    one attends to them)."""
    if block < 1:
        raise SubnetScopeError(f"the block size must be ≥ 1, not {block}")
    length = valid.shape[1]
    positions = torch.arange(length)
    blocks = block_index(length, block)
    causal = positions[None, :] <= positions[:, None]  # (q, k)
    before_block = positions[None, :] < (blocks[:, None] * block)  # clean keys before q's block
    same_block = (blocks[:, None] == blocks[None, :]) & (blocks[:, None] >= 0)
    nothing = torch.zeros(length, length, dtype=torch.bool)
    keep = torch.cat(
        [torch.cat([causal, nothing], dim=1), torch.cat([before_block, same_block], dim=1)]
    )  # (2L, 2L)
    both = torch.cat([valid, valid], dim=1).bool()  # (B, 2L)
    keep = keep.to(valid.device)[None] & both[:, None, :]
    keep = keep | torch.eye(2 * length, dtype=torch.bool, device=valid.device)[None]
    return keep[:, None]


def key_positions(query_positions: torch.Tensor, k_len: int) -> torch.Tensor:
    """Position ids of the keys a layer sees: the cached ones (contiguous, right before the first
    query; a sliding-window cache returns only its last ones) followed by the queries."""
    q_len = query_positions.shape[-1]
    start = int(query_positions[0])
    cached = torch.arange(start - (k_len - q_len), start, device=query_positions.device)
    return torch.cat([cached, query_positions])


def window_of(module: nn.Module) -> int | None:
    """The module's sliding window in tokens, or None for a global layer."""
    window = getattr(module, "sliding_window", None)
    return int(window) if isinstance(window, int) and window > 0 else None


KeepFn = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


def _hook(keep_for: KeepFn):
    def hook(module, query, key, value, mask, kwargs) -> torch.Tensor:
        q_len, k_len = query.shape[2], key.shape[2]
        keep, q_positions = keep_for(q_len, k_len)  # (B or 1, 1, q, k), (q,)
        keep = keep.to(query.device)
        window = window_of(module)
        if window is not None:
            q_positions = q_positions.to(query.device)
            k_positions = key_positions(q_positions, k_len)
            keep = keep & ((q_positions[:, None] - k_positions[None, :]) < window)
        return as_mask(keep, mask, module, query.dtype)

    return hook


def attention_modules_of(loaded: LoadedModel) -> list[nn.Module]:
    """Every module that calls the attention function (it carries an integer `layer_idx`)."""
    found = [
        m
        for m in loaded.model.modules()
        if isinstance(getattr(m, "layer_idx", None), int) and type(m).__name__.endswith("Attention")
    ]
    if not found:
        raise SubnetScopeError(f"no attention modules found in {loaded.display_name}")
    for module in found:
        check_scopable(module)
    return found


@contextmanager
def block_attention(loaded: LoadedModel, keep_for: KeepFn) -> Iterator[None]:
    """Within the block, this context's calls attend through `keep_for(q_len, k_len)` →
    (keep (B|1, 1, q_len, k_len), query position ids (q_len,)) in every layer, a sliding-window
    layer keeping its window. Other contexts (sessions, threads) are untouched."""
    hook = _hook(keep_for)
    hooks = [(module, "attention", hook) for module in attention_modules_of(loaded)]
    with scoped_hooks(loaded, hooks, name="set-block-decoding"):
        yield
