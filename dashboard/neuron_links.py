"""Neuron tables that lead to the Neuron passport page: a link per row and one below the table."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from dashboard.navigation import PAGES_DIR

# st.page_link finds a page by its script's absolute path among those st.navigation registered.
PASSPORT = str(PAGES_DIR / "passport.py")
PASSPORT_URL = "passport"  # its url_path in dashboard.navigation.SECTIONS


def passport_params(model: str, layer: int, neuron: int) -> dict[str, str]:
    """The passport page's query params for one neuron of `model` (a model_picker source)."""
    return {"model": str(model), "layer": str(int(layer)), "neuron": str(int(neuron))}


def passport_url(model: str, layer: int, neuron: int) -> str:
    """`passport?model=...&layer=...&neuron=...`, relative to the app's root like every page."""
    return f"{PASSPORT_URL}?{urlencode(passport_params(model, layer, neuron))}"


def neuron_table(
    table: pd.DataFrame,
    model: str,
    *,
    key: str,
    height: int | None = None,
    column_config: dict | None = None,
) -> None:
    """`table` (columns layer, neuron, …) with a passport link per row; the selected row (the
    first when none is) gets a page link below, which opens the passport in this tab."""
    missing = {"layer", "neuron"} - set(table.columns)
    if missing:
        raise ValueError(f"a neuron table needs the columns layer and neuron, lacks {missing}")
    links = [
        passport_url(model, layer, neuron)
        for layer, neuron in zip(table["layer"], table["neuron"], strict=True)
    ]
    shown = table.reset_index(drop=True).assign(passport=links)
    config = {
        "passport": st.column_config.LinkColumn(
            "passport", display_text="open", help="This neuron's passport (opens a new tab)"
        ),
        **(column_config or {}),
    }
    event = st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        height=height or "auto",
        column_config=config,
        key=key,
        on_select="rerun",
        selection_mode="single-row",
    )
    if shown.empty:
        return
    rows = [r for r in event.selection.rows if r < len(shown)]  # a stale pick of a longer table
    row = shown.iloc[rows[0] if rows else 0]
    layer, neuron = int(row["layer"]), int(row["neuron"])
    st.page_link(
        PASSPORT,
        label=f"Passport of neuron L{layer}.{neuron} →",
        icon=":material/badge:",
        query_params=passport_params(model, layer, neuron),
        help="Select a row to pick another neuron",
    )
