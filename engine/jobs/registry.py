"""Job kinds registered by name: `@job("eval.perplexity")` over a plain `(params, ctx)` function."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.areas import kind_modules
from engine.errors import SubnetScopeError

# Modules that define job kinds: each area's `kinds` row in engine/areas.py. They sit above this
# layer, so they are imported by name when the kinds are first needed, never at import time.
KIND_MODULES = kind_modules()


def _extra_modules() -> list[str]:
    """`$SUBNETSCOPE_JOB_MODULES`: comma-separated modules with more kinds (plugins, tests)."""
    return [
        m.strip() for m in os.environ.get("SUBNETSCOPE_JOB_MODULES", "").split(",") if m.strip()
    ]


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Callable[[dict[str, Any], Any], Any]
    title: str
    result_page: str | None  # the dashboard page (url path) that shows this kind's results
    defaults: dict[str, Any]
    mem_gb: float  # expected peak memory of one run: the local queue's and SLURM's default


_KINDS: dict[str, JobKind] = {}
DEFAULT_MEM_GB = 4.0


def job(
    name: str,
    *,
    title: str | None = None,
    result_page: str | None = None,
    defaults: dict[str, Any] | None = None,
    mem_gb: float = DEFAULT_MEM_GB,
) -> Callable:
    """Register a job kind. The function gets the params (defaults merged in) and a JobContext;
    `mem_gb` is what one run is expected to need at its peak (on the demo model)."""

    def register(fn: Callable[[dict[str, Any], Any], Any]) -> Callable:
        _KINDS[name] = JobKind(
            name=name,
            run=fn,
            title=title or (fn.__doc__ or name).strip().splitlines()[0],
            result_page=result_page,
            defaults=dict(defaults or {}),
            mem_gb=mem_gb,
        )
        return fn

    return register


def load_kinds() -> dict[str, JobKind]:
    for module in (*KIND_MODULES, *_extra_modules()):
        importlib.import_module(module)
    return dict(_KINDS)


def get_kind(name: str) -> JobKind:
    kinds = load_kinds()
    if name not in kinds:
        raise SubnetScopeError(
            f"unknown job kind '{name}'; known kinds: {', '.join(sorted(kinds))}"
        )
    return kinds[name]
