"""Altair charts of what a job reports (metrics, progress), for Runs and views that watch a run."""

from __future__ import annotations

import altair as alt
import pandas as pd


def job_metrics_chart(metrics: pd.DataFrame) -> alt.Chart:
    """Lines: each metric a job reported, against its step (or seconds when a step is missing)."""
    x = "step" if metrics["step"].notna().all() else "seconds"
    return (
        alt.Chart(metrics)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:Q", title=x, axis=alt.Axis(format="~g" if x == "step" else ".1f")),
            y=alt.Y("value:Q", title="value"),
            color=alt.Color("name:N", title="metric"),
            tooltip=["name", "step", alt.Tooltip("seconds:Q", format=".1f"), "value"],
        )
        .properties(height=220)
    )


def job_progress_chart(progress: pd.DataFrame) -> alt.Chart:
    """A small step line: a job's progress fraction over seconds since it started."""
    return (
        alt.Chart(progress)
        .mark_line(interpolate="step-after", point=True)
        .encode(
            x=alt.X("seconds:Q", title="seconds"),
            y=alt.Y(
                "fraction:Q",
                title="progress",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            tooltip=[
                alt.Tooltip("seconds:Q", format=".1f"),
                alt.Tooltip("fraction:Q", format=".0%"),
                "message",
            ],
        )
        .properties(height=120)
    )
