"""Cached loaders at the dashboard's edge: one shared, read-only model per source."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.models import LoadedModel, load_model, model_summary, parameters_by_kind


@st.cache_resource(max_entries=2, show_spinner="Loading model…")
def shared_model(source: str) -> LoadedModel:
    """Shared by every browser session: never mutate it (masks and adapters apply per call)."""
    return load_model(source)


@st.cache_data(max_entries=8, show_spinner=False)
def summary_table(source: str) -> pd.DataFrame:
    return model_summary(shared_model(source))


@st.cache_data(max_entries=8, show_spinner=False)
def parameters_table(source: str) -> pd.DataFrame:
    return parameters_by_kind(shared_model(source))
