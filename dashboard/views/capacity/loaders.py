"""The Capacity view's cached loaders: finished meter jobs and their tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from engine.errors import SubnetScopeError


@st.cache_data(max_entries=4, show_spinner=False)
def meter_list(stamp: str) -> list[tuple[str, str]]:
    """(result folder, label) of every finished capacity meter, newest first; `stamp` (the
    workspace stamp) brings in new ones."""
    from engine.capacity import MeterConfig, meter_results, size_label

    listed = []
    for found in meter_results():
        try:
            config = MeterConfig.from_params(found.params)
        except SubnetScopeError:  # a folder written by another version: its id is enough
            listed.append((str(found.path), found.view.id))
            continue
        sizes = ", ".join(size_label(*s) for s in config.sizes)
        listed.append(
            (str(found.path), f"{found.view.id} · {sizes} · {'+'.join(config.precisions)}")
        )
    return listed


@st.cache_data(max_entries=8, show_spinner=False)
def result_table(folder: str, name: str, stamp: str) -> pd.DataFrame:
    """One parquet table of a job's result folder; `stamp` (the workspace stamp) re-reads it."""
    path = Path(folder) / name
    if not path.is_file():
        raise SubnetScopeError(f"no {name} in '{folder}'")
    return pd.read_parquet(path)
