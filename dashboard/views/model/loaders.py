"""The Model view's cached tables (the model itself is the shared dashboard.loaders)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.loaders import shared_model
from engine.models import model_summary, parameters_by_kind


@st.cache_data(max_entries=8, show_spinner=False)
def summary_table(source: str, dtype: str) -> pd.DataFrame:
    return model_summary(shared_model(source, dtype))


@st.cache_data(max_entries=8, show_spinner=False)
def parameters_table(source: str, dtype: str) -> pd.DataFrame:
    return parameters_by_kind(shared_model(source, dtype))
