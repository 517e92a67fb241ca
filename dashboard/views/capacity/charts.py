"""Altair charts of the Capacity page: memorized vs dataset bits, bits per parameter vs size."""

from __future__ import annotations

import altair as alt
import pandas as pd

from engine.capacity import PAPER_BITS_PER_PARAM


def _line_label(frame: pd.DataFrame) -> pd.Series:
    return (
        frame["size"]
        + " · "
        + frame["params"].map("{:,}".format)
        + " params · "
        + frame["precision"]
    )


def memorized_chart(runs: pd.DataFrame) -> alt.LayerChart:
    """Memorized bits (mean over seeds) against the data's bits, log-log, one line per size and
    precision, with y = x: everything memorized. Points below 1 bit are left out (log scale)."""
    means = (
        runs.groupby(["size", "params", "precision", "n"], as_index=False)
        .agg(data_bits=("data_bits", "first"), memorized_bits=("memorized_bits", "mean"))
        .query("memorized_bits >= 1")
    )
    means = means.assign(line=_line_label(means))
    low, high = float(runs["data_bits"].min()), float(runs["data_bits"].max())
    axis_x = alt.X(
        "data_bits:Q", title="dataset bits H(X) = N·S·log₂V", scale=alt.Scale(type="log")
    )
    points = (
        alt.Chart(means)
        .mark_line(point=True)
        .encode(
            x=axis_x,
            y=alt.Y("memorized_bits:Q", title="memorized bits", scale=alt.Scale(type="log")),
            color=alt.Color("size:N", title="size", sort=None),
            strokeDash=alt.StrokeDash("precision:N", title="precision"),
            detail="line:N",
            tooltip=[
                "line",
                "n",
                alt.Tooltip("data_bits:Q", format=",.0f"),
                alt.Tooltip("memorized_bits:Q", format=",.0f"),
            ],
        )
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"data_bits": [low, high], "memorized_bits": [low, high]}))
        .mark_line(color="gray", strokeDash=[2, 2])
        .encode(x=axis_x, y="memorized_bits:Q")
    )
    return alt.layer(diagonal, points)


def bits_per_param_chart(capacity: pd.DataFrame) -> alt.LayerChart:
    """Bits per parameter against parameters (log x), one point per size and precision, with the
    paper's means (3.51 bf16, 3.83 fp32) as horizontal rules; the shape says whether the model
    (not the data) set the maximum."""
    points = (
        alt.Chart(capacity)
        .mark_point(size=80, filled=True)
        .encode(
            x=alt.X("params:Q", title="parameters", scale=alt.Scale(type="log")),
            y=alt.Y("bits_per_param:Q", title="bits per parameter", scale=alt.Scale(zero=True)),
            color=alt.Color("precision:N", title="precision"),
            shape=alt.Shape("saturated:N", title="model-limited"),
            tooltip=[
                "size",
                "precision",
                alt.Tooltip("params:Q", format=","),
                alt.Tooltip("capacity_bits:Q", format=",.0f"),
                alt.Tooltip("bits_per_param:Q", format=".3f"),
                "n_at_max",
                "saturated",
            ],
        )
    )
    paper = pd.DataFrame(
        {
            "precision": list(PAPER_BITS_PER_PARAM),
            "bits_per_param": list(PAPER_BITS_PER_PARAM.values()),
            "label": [f"paper, {p}: {v}" for p, v in PAPER_BITS_PER_PARAM.items()],
        }
    )
    rules = (
        alt.Chart(paper)
        .mark_rule(strokeDash=[4, 3])
        .encode(y="bits_per_param:Q", color="precision:N", tooltip=["label"])
    )
    labels = (
        alt.Chart(paper)
        .mark_text(align="left", dx=4, dy=-6)
        .encode(y="bits_per_param:Q", text="label:N", color="precision:N")
    )
    return alt.layer(rules, labels, points)
