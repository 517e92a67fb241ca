"""Per-module hooks on the attention function itself (after RoPE and QK-norm, before softmax).

Every supported family (GPT-2, Llama, Qwen2, Gemma 3, Gemma 3n) computes attention by calling
`ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)` with
the attention module as first argument. `install()` (once per process, idempotent) registers a
dispatcher under "sdpa" and "eager" that first runs the hooks registered for that module, then
the original function: transformers' own sdpa, or the module's family `eager_attention_forward`.
With no hook on a module the dispatcher calls the original with the same arguments, so results are
bit-identical (a test checks it). Hooks are registered only through
`engine.models.hooks.scoped_hooks(..., [(module, "attention", fn)])`, which gates them per context.

A hook is `fn(module, query, key, value, attention_mask, kwargs) -> new attention_mask | None`:
query (batch, heads, q_len, head_dim), key/value (batch, kv_heads, k_len, head_dim), the mask in
the implementation's own format (sdpa: bool, True = attend, or None for plain causal; eager:
additive float). Hooks run in install order; each sees the mask the previous one returned.
"""

from __future__ import annotations

import itertools
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from engine.errors import SubnetScopeError

AttentionHook = Callable[..., torch.Tensor | None]
SCOPED_IMPLEMENTATIONS = ("sdpa", "eager")

_HOOKS: weakref.WeakKeyDictionary[nn.Module, dict[int, AttentionHook]] = weakref.WeakKeyDictionary()
_IDS = itertools.count()
_LOCK = threading.Lock()
_installed = False


class AttentionHandle:
    """Removes one registered attention hook (the shape of torch's RemovableHandle)."""

    def __init__(self, module: nn.Module, key: int) -> None:
        self._module = weakref.ref(module)
        self._key = key

    def remove(self) -> None:
        module = self._module()
        if module is None:
            return
        with _LOCK:  # copy on write: a dispatcher iterating the old dict is never disturbed
            hooks = {k: fn for k, fn in _HOOKS.get(module, {}).items() if k != self._key}
            if hooks:
                _HOOKS[module] = hooks
            else:
                _HOOKS.pop(module, None)


def implementation(module: nn.Module) -> str:
    config = getattr(module, "config", None)
    return str(getattr(config, "_attn_implementation", None) or "eager")


def check_scopable(module: nn.Module) -> None:
    """One clear error for an attention module whose calls this cannot reach."""
    name = implementation(module)
    if name not in SCOPED_IMPLEMENTATIONS:
        raise SubnetScopeError(
            f"attention hooks work with the sdpa and eager implementations; this model uses "
            f"'{name}' (load it with attn_implementation='sdpa')"
        )
    if getattr(module, "reorder_and_upcast_attn", False) and name == "eager":
        raise SubnetScopeError(
            "this GPT-2 uses reorder_and_upcast_attn, which bypasses the attention interface"
        )


def register(module: nn.Module, fn: AttentionHook) -> AttentionHandle:
    check_scopable(module)
    install()
    key = next(_IDS)
    with _LOCK:
        _HOOKS[module] = {**_HOOKS.get(module, {}), key: fn}
    return AttentionHandle(module, key)


def _family_eager(module: nn.Module) -> Callable[..., Any]:
    family = sys.modules.get(type(module).__module__)
    eager = getattr(family, "eager_attention_forward", None)
    if eager is None:
        raise SubnetScopeError(
            f"{type(module).__name__} has no eager_attention_forward in its modeling file; "
            "load the model with attn_implementation='sdpa'"
        )
    return eager


def _dispatcher(original: Callable[..., Any] | None) -> Callable[..., Any]:
    def attention(
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        **kwargs: Any,
    ) -> Any:
        hooks = _HOOKS.get(module)
        if hooks:
            for fn in hooks.values():
                changed = fn(module, query, key, value, attention_mask, kwargs)
                if changed is not None:
                    attention_mask = changed
        target = original if original is not None else _family_eager(module)
        return target(module, query, key, value, attention_mask, **kwargs)

    attention.subnetscope_dispatcher = True  # type: ignore[attr-defined]
    attention.original = original  # type: ignore[attr-defined]
    return attention


def install() -> None:
    """Put the dispatcher in front of sdpa and eager in transformers' attention registry (once)."""
    global _installed
    if _installed:
        return
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    with _LOCK:
        if _installed:
            return
        for name in SCOPED_IMPLEMENTATIONS:
            current = ALL_ATTENTION_FUNCTIONS.get(name)
            if getattr(current, "subnetscope_dispatcher", False):
                continue
            AttentionInterface.register(name, _dispatcher(current))
        _installed = True


# Mask formats ---------------------------------------------------------------------------------


def keep_matrix(mask: torch.Tensor | None, q_len: int, k_len: int, device) -> torch.Tensor:
    """Which keys each query may attend to, as bool (batch or 1, 1, q_len, k_len).

    `None` is plain causal attention with the queries at the end of the keys (a KV cache holds
    the first k_len - q_len positions)."""
    if mask is None:
        offset = k_len - q_len
        rows = torch.arange(q_len, device=device)[:, None] + offset
        cols = torch.arange(k_len, device=device)[None, :]
        return (cols <= rows)[None, None]
    if not isinstance(mask, torch.Tensor):
        raise SubnetScopeError(
            f"attention hooks cannot read a {type(mask).__name__} mask; use sdpa or eager"
        )
    mask = mask[..., :k_len]
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2


def as_mask(
    keep: torch.Tensor, like: torch.Tensor | None, module: nn.Module, dtype
) -> torch.Tensor:
    """`keep` in the format the module's implementation expects (that of `like` when given)."""
    wants_bool = (like is not None and like.dtype == torch.bool) or (
        like is None and implementation(module) == "sdpa"
    )
    if wants_bool:
        return keep
    float_dtype = like.dtype if like is not None else dtype
    zero = torch.zeros((), dtype=float_dtype, device=keep.device)
    low = torch.full((), torch.finfo(float_dtype).min, dtype=float_dtype, device=keep.device)
    return torch.where(keep, zero, low)
