"""Scoped hooks: the one way to alter or observe a shared model for the duration of one call.

Every per-call intervention (neuron masks, live LoRA, activation capture, LRP, Wanda) installs
its forward and forward-pre hooks through `scoped_hooks`. The hooks are registered under
`loaded.hook_lock` when the block starts and removed in `finally` when it ends, even on an
exception; the model's weights are never written. Each scope is bound to the context (thread,
browser session) that opened it through one ContextVar holding the tuple of scopes active in that
context, so a call from another session on the same shared model never sees the hooks.

Nesting rule: scopes COMBINE. A scope opened inside another adds its hooks to the outer one's;
both apply, and on a shared module they run in install order, outer first (all pre-hooks of a
module before its forward, then all forward hooks). So nested masks multiply (zero A outside,
zero B inside: A and B are both zero), LoRA updates add, and nested captures each capture. Where
combining has no meaning the scope is opened with `exclusive=True`, and opening a second scope of
the same name inside it (or it inside one) raises one SubnetScopeError at entry, before any hook is
installed: an LRP pass inside an LRP pass, for example. Nothing ever silently overrides another.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from torch import nn

from engine.errors import SubnetScopeError
from engine.models.attention_calls import register as register_attention_hook
from engine.models.loading import LoadedModel

HookKind = Literal["pre", "pre-kwargs", "forward", "attention"]
# (module, "pre", fn(module, args) -> new args | None),
# (module, "pre-kwargs", fn(module, args, kwargs) -> (new args, new kwargs) | None) or
# (module, "forward", fn(module, args, output) -> new output | None), as torch calls them;
# (attention module, "attention", fn(module, query, key, value, mask, kwargs) -> new mask | None)
# on the attention function's own inputs (engine/models/attention_calls.py).
Hook = tuple[nn.Module, HookKind, Callable[..., Any]]
HOOK_KINDS: tuple[str, ...] = ("pre", "pre-kwargs", "forward", "attention")


class _Scope:
    """One open `scoped_hooks` block; compared by identity."""

    __slots__ = ("exclusive", "name")

    def __init__(self, name: str, exclusive: bool) -> None:
        self.name = name
        self.exclusive = exclusive


_active: contextvars.ContextVar[tuple[_Scope, ...]] = contextvars.ContextVar(
    "subnetscope_active_scopes", default=()
)


def active_scopes() -> tuple[str, ...]:
    """Names of the scopes open in the calling context, outermost first."""
    return tuple(scope.name for scope in _active.get())


def _gated(scope: _Scope, kind: HookKind, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, run only for calls made from a context where `scope` is open."""
    if kind == "pre":

        def pre_hook(module: nn.Module, args: tuple) -> Any:
            if scope in _active.get():
                return fn(module, args)
            return None

        return pre_hook

    if kind == "pre-kwargs":

        def pre_kwargs_hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
            if scope in _active.get():
                return fn(module, args, kwargs)
            return None

        return pre_kwargs_hook

    if kind == "attention":

        def attention_hook(module: nn.Module, *inputs: Any) -> Any:
            if scope in _active.get():
                return fn(module, *inputs)
            return None

        return attention_hook

    def forward_hook(module: nn.Module, args: tuple, output: Any) -> Any:
        if scope in _active.get():
            return fn(module, args, output)
        return None

    return forward_hook


@contextmanager
def scoped_hooks(
    loaded: LoadedModel, hooks: Iterable[Hook], *, name: str, exclusive: bool = False
) -> Iterator[None]:
    """Within this block, `hooks` fire for calls from this context only; nobody else sees them.

    `name` says what the scope is in errors ("mask", "LoRA", "LRP"…); `exclusive` refuses to nest
    it with another scope of the same name (see the module docstring for the rule)."""
    hooks = list(hooks)
    for _, kind, _ in hooks:
        if kind not in HOOK_KINDS:
            raise SubnetScopeError(
                f"unknown hook kind '{kind}'; use one of {', '.join(HOOK_KINDS)}"
            )
    opened = _active.get()
    for scope in opened:
        if scope.name == name and (exclusive or scope.exclusive):
            raise SubnetScopeError(
                f"{name} is already running in this call, and two {name} scopes do not "
                "combine; run them one after the other"
            )
    scope = _Scope(name, exclusive)
    token = _active.set((*opened, scope))
    handles = []
    try:
        with loaded.hook_lock:
            for module, kind, fn in hooks:
                gated = _gated(scope, kind, fn)
                if kind == "pre":
                    handles.append(module.register_forward_pre_hook(gated))
                elif kind == "pre-kwargs":
                    handles.append(module.register_forward_pre_hook(gated, with_kwargs=True))
                elif kind == "attention":
                    handles.append(register_attention_hook(module, gated))
                else:
                    handles.append(module.register_forward_hook(gated))
        yield
    finally:
        with loaded.hook_lock:
            for handle in handles:
                handle.remove()
        _active.reset(token)
