"""Altair charts of the pruning page: candidates per layer, toxicity and perplexity against N."""

from __future__ import annotations

import altair as alt
import pandas as pd


def layer_bars(counts: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(counts)
        .mark_bar()
        .encode(
            x=alt.X("layer:O"),
            y=alt.Y("neurons:Q", title="candidates"),
            tooltip=["layer", "neurons"],
        )
        .properties(height=200)
    )


def curves(evaluation: pd.DataFrame) -> alt.Chart:
    """Toxicity and perplexity (each on its own axis) against the number of pruned neurons."""
    base = alt.Chart(evaluation).encode(x=alt.X("neurons:Q", title="neurons pruned (N)"))
    toxicity = base.mark_line(point=True, color="#d62728").encode(
        y=alt.Y("toxicity:Q", title="toxicity (mean)", axis=alt.Axis(titleColor="#d62728")),
        tooltip=["neurons", alt.Tooltip("toxicity:Q", format=".3f"), "scorer"],
    )
    ppl = base.mark_line(point=True, color="#1f77b4").encode(
        y=alt.Y(
            "perplexity:Q",
            title="perplexity",
            scale=alt.Scale(zero=False),
            axis=alt.Axis(titleColor="#1f77b4"),
        ),
        tooltip=["neurons", alt.Tooltip("perplexity:Q", format=".3f")],
    )
    return alt.layer(toxicity, ppl).resolve_scale(y="independent").properties(height=260)
