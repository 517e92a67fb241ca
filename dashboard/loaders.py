"""The model every view shares: one cached, read-only model per source."""

from __future__ import annotations

import streamlit as st

from engine.errors import SubnetScopeError
from engine.models import GB, LoadedModel, MemoryPlan, free_bytes, load_model, plan_load


@st.cache_resource(max_entries=2, show_spinner="Loading model…")
def shared_model(source: str) -> LoadedModel:
    """Shared by every browser session: never mutate it (masks and adapters apply per call)."""
    return load_model(source)


@st.cache_data(max_entries=16, show_spinner=False)
def memory_plan(source: str, stamp: tuple) -> MemoryPlan | str:
    """What loading `source` will need, from its config alone (no weight read), or why it cannot
    be planned; `stamp` (the model folders' listing) is part of the key."""
    try:
        return plan_load(source)
    except SubnetScopeError as exc:
        return str(exc)


def memory_caption(source: str, stamp: tuple) -> str | None:
    """One line: what the load needs against what is free (None where it cannot be planned)."""
    plan = memory_plan(source, stamp)
    if isinstance(plan, str):
        return None
    free = free_bytes(plan.device)
    verdict = "fits" if plan.fits(free) else "would not fit"
    return (
        f"Loading needs ≈ {plan.total_bytes / GB:.2f} GB ({plan.parameters / 1e6:,.0f}M "
        f"parameters in {plan.dtype} + a 512-token forward); {free / GB:.1f} GB free on "
        f"{plan.device.upper()}: {verdict}."
    )
