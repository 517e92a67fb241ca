"""Every table the UI shows can be taken away: CSV and parquet download buttons."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st


def downloads(table: pd.DataFrame, stem: str, key: str) -> None:
    left, right = st.columns(2)
    left.download_button(
        "CSV", table.to_csv(index=False), f"{stem}.csv", "text/csv", key=f"{key}_csv"
    )
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    right.download_button("Parquet", buffer.getvalue(), f"{stem}.parquet", key=f"{key}_pq")
