"""The model every view shares: one cached, read-only model per (source, dtype)."""

from __future__ import annotations

import weakref

import streamlit as st

from engine.errors import SubnetScopeError
from engine.models import (
    GB,
    LoadedModel,
    MemoryPlan,
    check_fits,
    dtype_choice,
    free_bytes,
    load_model,
    plan_load,
)

DTYPE_KEY = "model_dtype"  # session state: the precision picked in the sidebar, across pages

# The models this process holds, by (source, dtype): planned against free memory before their load
# only (once held, the model's own bytes are no longer free). Weak: an evicted model drops out.
_HELD: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def chosen_dtype() -> str:
    """The precision picked in the sidebar (auto until one is): every view loads in it and every
    cache that holds what the model computed takes it in its key."""
    return st.session_state.get(DTYPE_KEY, "auto")


@st.cache_resource(max_entries=2, show_spinner="Loading model…")
def _held_model(source: str, dtype: str) -> LoadedModel:
    # Loaded in its storage dtype (auto) or the one picked; never cast again by a view.
    return load_model(source, dtype=dtype)


def shared_model(source: str, dtype: str) -> LoadedModel:
    """Shared by every browser session: never mutate it (masks and adapters apply per call).
    A load that would not fit is refused in one sentence before the spinner, from the plan."""
    dtype = dtype_choice(dtype)
    if (source, dtype) not in _HELD:
        from dashboard.stamps import models_stamp

        plan = memory_plan(source, dtype, models_stamp())
        if isinstance(plan, MemoryPlan):
            check_fits(plan, free_bytes(plan.device))
    loaded = _held_model(source, dtype)
    _HELD[source, dtype] = loaded
    return loaded


@st.cache_data(max_entries=16, show_spinner=False)
def memory_plan(source: str, dtype: str, stamp: tuple) -> MemoryPlan | str:
    """What loading `source` in `dtype` will need, from its config alone (no weight read), or
    why it cannot be planned; `stamp` (the model folders' listing) is part of the key."""
    try:
        return plan_load(source, dtype=dtype)
    except SubnetScopeError as exc:
        return str(exc)


def memory_caption(source: str, dtype: str, stamp: tuple) -> str | None:
    """One line: what the load needs against what is free (None where it cannot be planned)."""
    plan = memory_plan(source, dtype, stamp)
    if isinstance(plan, str):
        return None
    held = (source, dtype_choice(dtype)) in _HELD
    free = free_bytes(plan.device)
    verdict = "loaded" if held else "fits" if plan.fits(free) else "would not fit"
    return (
        f"Loading needs ≈ {plan.total_bytes / GB:.2f} GB ({plan.parameters / 1e6:,.0f}M "
        f"parameters in {plan.dtype} + a 512-token forward); {free / GB:.1f} GB free on "
        f"{plan.device.upper()}: {verdict}."
    )
