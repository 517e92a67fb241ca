"""The TFLite explorer's Altair charts: op histogram, tensor values, heatmap, weight errors."""

from __future__ import annotations

import altair as alt
import pandas as pd


def op_histogram_chart(table: pd.DataFrame, top: int = 30) -> alt.Chart:
    """Bars: op count per opcode (the `top` most frequent)."""
    data = table.nlargest(top, "count")
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("count:Q", title="ops"),
            y=alt.Y("opcode:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
            tooltip=["opcode", "count", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=alt.Step(18))
    )


def value_histogram_chart(values: pd.DataFrame) -> alt.Chart:
    """Histogram of a tensor's values (a `value` column, already sampled if large)."""
    return (
        alt.Chart(values)
        .mark_bar()
        .encode(
            x=alt.X("value:Q", bin=alt.Bin(maxbins=60), title="value"),
            y=alt.Y("count():Q", title="count"),
        )
        .properties(height=220)
    )


def heatmap_chart(cells: pd.DataFrame) -> alt.Chart:
    """Heatmap of a 2-D array given as `row`, `col`, `value` cells (already pooled if large)."""
    return (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            x=alt.X("col:O", title="column (pooled)", axis=alt.Axis(labels=False, ticks=False)),
            y=alt.Y("row:O", title="row (pooled)", axis=alt.Axis(labels=False, ticks=False)),
            color=alt.Color("value:Q", scale=alt.Scale(scheme="redblue", domainMid=0)),
            tooltip=["row", "col", alt.Tooltip("value:Q", format=".4g")],
        )
        .properties(height=320)
    )


def weight_error_chart(table: pd.DataFrame) -> alt.Chart:
    """Bars: per matched tensor (one per buffer), max |Δ| / quantization step; the rule at 0.5 is
    half a step, the most rounding to the nearest level can cost. Float tensors have no step: 0
    when exact."""
    data = table.drop_duplicates("buffer").copy()
    data["ratio"] = data["|Δ| / step"].fillna(0.0)
    data["tensor"] = data["subgraph"] + ":" + data["tensor"].astype(str)
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("tensor:N", sort=None, title="tensor", axis=alt.Axis(labels=False)),
            y=alt.Y("ratio:Q", title="max |Δ| / step"),
            color=alt.Color("quantization:N"),
            tooltip=[
                "tensor",
                "hf",
                "quantization",
                "max |Δ|",
                alt.Tooltip("ratio:Q", format=".4f"),
            ],
        )
    )
    half = alt.Chart(pd.DataFrame({"y": [0.5]})).mark_rule(strokeDash=[4, 4]).encode(y="y:Q")
    return (bars + half).properties(height=240)
