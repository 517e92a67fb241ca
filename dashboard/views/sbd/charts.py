"""Altair charts of the Set block decoding page: which pass revealed which token, and a run's
quality and forward passes against the entropy threshold."""

from __future__ import annotations

import altair as alt
import pandas as pd


def reveal_chart(tokens: pd.DataFrame) -> alt.LayerChart:
    """One cell per generated token (`position`, 1-based) on the row of the forward `pass` that
    revealed it, coloured by its block: tokens revealed together share a row, and a row's cells
    need not be adjacent."""
    axis_x = alt.X("position:O", title="token (position in the generation)")
    axis_y = alt.Y("pass:O", title="forward pass", sort="ascending")
    base = alt.Chart(tokens).encode(x=axis_x, y=axis_y)
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color("block:O", title="block", scale=alt.Scale(scheme="pastel1")),
        tooltip=["position", "pass", "block", "slot", alt.Tooltip("shown:N", title="token")],
    )
    text = base.mark_text(fontSize=11).encode(text="shown:N")
    return alt.layer(cells, text).properties(width=alt.Step(22), height=alt.Step(20))


def versus_threshold(table: pd.DataFrame, column: str, title: str) -> alt.LayerChart:
    """`column` of the SBD rows against the threshold γ (one line per block size), with the
    autoregressive row as a dashed horizontal rule."""
    sbd = table[table["method"] != "autoregressive"]
    ar = table[table["method"] == "autoregressive"].head(1)
    line = (
        alt.Chart(sbd)
        .mark_line(point=True)
        .encode(
            x=alt.X("threshold:Q", title="entropy threshold γ (nats)"),
            y=alt.Y(f"{column}:Q", title=title, scale=alt.Scale(zero=True)),
            color=alt.Color("block_size:N", title="block size k"),
            tooltip=[
                "threshold",
                "block_size",
                alt.Tooltip(f"{column}:Q", format=".3f"),
                alt.Tooltip("speedup:Q", format=".2f"),
            ],
        )
    )
    rule = (
        alt.Chart(ar.assign(label="autoregressive"))
        .mark_rule(color="gray", strokeDash=[4, 3])
        .encode(y=f"{column}:Q", tooltip=["label", alt.Tooltip(f"{column}:Q", format=".3f")])
    )
    return alt.layer(rule, line)
