"""The model every view shares: one cached, read-only model per source."""

from __future__ import annotations

import streamlit as st

from engine.models import LoadedModel, load_model


@st.cache_resource(max_entries=2, show_spinner="Loading model…")
def shared_model(source: str) -> LoadedModel:
    """Shared by every browser session: never mutate it (masks and adapters apply per call)."""
    return load_model(source)
