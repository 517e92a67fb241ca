"""Altair charts of the ICA page: key neurons per component × layer, overlaps, time courses."""

from __future__ import annotations

import altair as alt
import pandas as pd


def key_neuron_heatmap(counts: pd.DataFrame, unit: str = "neurons") -> alt.Chart:
    """Component × layer cells coloured by how many key neurons (or MLP output channels, `unit`)
    the component has there."""
    return (
        alt.Chart(counts)
        .mark_rect()
        .encode(
            x=alt.X("layer:O", title="layer"),
            y=alt.Y("component:O", title="component"),
            color=alt.Color("neurons:Q", title=f"key {unit}", scale=alt.Scale(scheme="viridis")),
            tooltip=["component", "layer", "neurons"],
        )
        .properties(height=alt.Step(16))
    )


def overlap_heatmap(overlaps: pd.DataFrame) -> alt.Chart:
    """Jaccard index of every pair of components' key-neuron sets."""
    return (
        alt.Chart(overlaps)
        .mark_rect()
        .encode(
            x=alt.X("a:O", title="component"),
            y=alt.Y("b:O", title="component"),
            color=alt.Color("jaccard:Q", scale=alt.Scale(scheme="blues", domain=[0, 1])),
            tooltip=["a", "b", alt.Tooltip("jaccard:Q", format=".3f"), "shared"],
        )
        .properties(height=alt.Step(16))
    )


def dataset_preference_chart(means: pd.DataFrame) -> alt.Chart:
    """Mean source value per component on each dataset: which text a component prefers."""
    return (
        alt.Chart(means)
        .mark_bar()
        .encode(
            x=alt.X("component:O"),
            xOffset="dataset:N",
            y=alt.Y("mean:Q", title="mean source value"),
            color=alt.Color("dataset:N"),
            tooltip=["component", "dataset", alt.Tooltip("mean:Q", format=".3f")],
        )
        .properties(height=220)
    )


def time_course_chart(course: pd.DataFrame, components: list[int]) -> alt.Chart:
    """The chosen components' sources along the tokens of a text (token under each point)."""
    shown = course[course["component"].isin(components)]
    return (
        alt.Chart(shown)
        .mark_line(point=True)
        .encode(
            x=alt.X("position:Q", title="token position"),
            y=alt.Y("value:Q", title="source value"),
            color=alt.Color("component:N"),
            tooltip=["position", "token", "component", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=260)
    )


def comparison_chart(long: pd.DataFrame) -> alt.Chart:
    """Task and general perplexity before and after each masked run (lower is better)."""
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("run:N", title=None),
            xOffset="when:N",
            y=alt.Y("value:Q", title="perplexity"),
            color=alt.Color("when:N", sort=["before", "after"]),
            column=alt.Column("metric:N", title=None),
            tooltip=["run", "metric", "when", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=240, width=260)
        .resolve_scale(y="independent")
    )
