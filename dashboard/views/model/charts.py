"""The Model view's Altair charts: parameters by module kind and by layer."""

from __future__ import annotations

import altair as alt
import pandas as pd


def parameters_by_kind_chart(table: pd.DataFrame) -> alt.Chart:
    """Horizontal bars: parameters per module kind, with their share of the total."""
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("parameters:Q", title="parameters"),
            y=alt.Y("kind:N", sort="-x", title=None),
            color=alt.Color("kind:N", legend=None),
            tooltip=[
                "kind",
                alt.Tooltip("parameters:Q", format=","),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
        .properties(height=alt.Step(28))
    )


def parameters_by_layer_chart(summary: pd.DataFrame) -> alt.Chart:
    """Stacked bars: parameters of each block by role (attention, MLP up/gate/down, norm)."""
    per_layer = summary.groupby(["layer", "role"], as_index=False)["parameters"].sum()
    return (
        alt.Chart(per_layer)
        .mark_bar()
        .encode(
            x=alt.X("layer:O", title="layer"),
            y=alt.Y("parameters:Q", title="parameters", stack=True),
            color=alt.Color("role:N", title="role"),
            tooltip=["layer", "role", alt.Tooltip("parameters:Q", format=",")],
        )
    )
