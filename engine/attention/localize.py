"""Make chosen global layers attend through a sliding window, for one call (no weight changes)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from engine.attention.layout import attention_layout
from engine.attention.modules import attention_modules, check_layers
from engine.errors import SubnetScopeError
from engine.models.attention_calls import as_mask, check_scopable, keep_matrix
from engine.models.hooks import scoped_hooks
from engine.models.loading import LoadedModel


def window_keep(
    q_len: int, k_len: int, window: int, device: torch.device, sinks: int = 0
) -> torch.Tensor:
    """(q_len, k_len) bool: key j is inside query i's window of `window` tokens (itself included),
    transformers' sliding rule kv_idx > q_idx - window, with the queries at the end of the keys;
    the first `sinks` positions stay visible (StreamingLLM's attention sinks)."""
    rows = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)
    cols = torch.arange(k_len, device=device)[None, :]
    return (cols > rows - window) | (cols < sinks)


def _window_hook(window: int, sinks: int):
    def hook(
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        kwargs: dict,
    ) -> torch.Tensor:
        q_len, k_len = query.shape[2], key.shape[2]
        keep = keep_matrix(mask, q_len, k_len, query.device)
        inside = window_keep(q_len, k_len, window, query.device, sinks)
        return as_mask(keep & inside, mask, module, query.dtype)

    return hook


@contextmanager
def localized(
    loaded: LoadedModel, layers: Iterable[int], window: int, *, sinks: int = 0
) -> Iterator[None]:
    """Within the block, calls from this context see `layers` (global ones) as sliding-window
    layers of `window` tokens. Only the mask changes: the layer keeps its own (global) RoPE base,
    where a model's built-in local layers may use another (Gemma 3: 10k local, 1M global).
    `sinks` > 0 keeps the first tokens visible too (not Gemma's rule: an option to tell the cost
    of losing the attention sink from the cost of losing long-range context)."""
    layers = sorted(set(int(layer) for layer in layers))
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise SubnetScopeError(f"the window must be a whole number of tokens ≥ 1, got {window!r}")
    if isinstance(sinks, bool) or not isinstance(sinks, int) or sinks < 0:
        raise SubnetScopeError(f"sinks must be a whole number of tokens ≥ 0, got {sinks!r}")
    modules = attention_modules(loaded)
    check_layers(modules, layers)
    kinds = {entry.layer: entry for entry in attention_layout(loaded.model.config)}
    for layer in layers:
        entry = kinds.get(layer)
        if entry is not None and entry.kind == "local":
            raise SubnetScopeError(
                f"layer {layer} is already local (a sliding window of {entry.window} tokens); "
                "pick a global layer"
            )
        check_scopable(modules[layer])
    hooks = [(modules[layer], "attention", _window_hook(window, sinks)) for layer in layers]
    with scoped_hooks(loaded, hooks, name="localize"):
        yield
