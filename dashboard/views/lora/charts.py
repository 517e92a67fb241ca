"""Altair charts of the LoRA blender: norms per layer, ranks, cosines, the delta map, rank runs,
a generator's training loss."""

from __future__ import annotations

import altair as alt
import pandas as pd

BLEND_COLOR = "#d62728"


def norm_per_layer(per_layer: pd.DataFrame) -> alt.Chart:
    """‖ΔW‖_F of each layer (all its modules together) for every adapter and the blend."""
    return (
        alt.Chart(per_layer)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:O"),
            y=alt.Y("norm:Q", title="‖ΔW‖_F"),
            color=alt.Color("adapter:N"),
            strokeDash=alt.condition(
                alt.datum.adapter == "blend", alt.value([6, 3]), alt.value([1, 0])
            ),
            tooltip=["adapter", "layer", alt.Tooltip("norm:Q", format=".4g")],
        )
        .properties(height=260)
    )


def ranks_by_kind(ranks: pd.DataFrame) -> alt.Chart:
    """Mean effective and stable rank per module kind, one group of bars per adapter."""
    long = ranks.melt(
        id_vars=["adapter", "kind"],
        value_vars=["effective_rank", "stable_rank"],
        var_name="measure",
        value_name="rank",
    )
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("adapter:N", title=None),
            y=alt.Y("rank:Q", title="mean rank"),
            color=alt.Color("adapter:N", legend=None),
            column=alt.Column("kind:N", title=None),
            row=alt.Row("measure:N", title=None),
            tooltip=["adapter", "kind", "measure", alt.Tooltip("rank:Q", format=".3g")],
        )
        .properties(height=120, width=alt.Step(18))
    )


def cosine_heatmap(matrix: pd.DataFrame) -> alt.Chart:
    """Overall cosine of the adapters' updates (all modules as one vector)."""
    long = matrix.rename_axis("a").reset_index().melt(id_vars="a", var_name="b", value_name="cos")
    base = alt.Chart(long).encode(x=alt.X("a:N", title=None), y=alt.Y("b:N", title=None))
    cells = base.mark_rect().encode(
        color=alt.Color("cos:Q", scale=alt.Scale(scheme="redblue", domain=[-1, 1], reverse=True)),
        tooltip=["a", "b", alt.Tooltip("cos:Q", format=".3f")],
    )
    text = base.mark_text().encode(text=alt.Text("cos:Q", format=".2f"))
    return (cells + text).properties(height=alt.Step(44), width=alt.Step(44))


def module_cosines(pairs: pd.DataFrame) -> alt.Chart:
    """Cosine of one adapter pair per layer × module kind."""
    return (
        alt.Chart(pairs)
        .mark_rect()
        .encode(
            x=alt.X("layer:O"),
            y=alt.Y("kind:N", title=None),
            color=alt.Color(
                "cosine:Q", scale=alt.Scale(scheme="redblue", domain=[-1, 1], reverse=True)
            ),
            tooltip=["module", alt.Tooltip("cosine:Q", format=".3f")],
        )
        .properties(height=alt.Step(24))
    )


def delta_map(points: pd.DataFrame, colors: dict[str, str] | None = None) -> alt.Chart:
    """Adapters and blends in the plane of the adapters' first two delta principal components;
    `colors` maps each kind of point to its color (default: base, adapter, blend)."""
    colors = colors or {"base": "#7f7f7f", "adapter": "#1f77b4", "blend": BLEND_COLOR}
    explained = points.attrs.get("explained", [None, None])

    def title(i: int) -> str:
        share = explained[i] if i < len(explained) else None
        return f"PC {i + 1} of Δ" + (f" ({share:.0%} of the adapters' spread)" if share else "")

    base = alt.Chart(points).encode(
        x=alt.X("x:Q", title=title(0)),
        y=alt.Y("y:Q", title=title(1)),
        tooltip=["name", "kind", alt.Tooltip("norm:Q", format=".4g", title="‖Δ‖")],
    )
    dots = base.mark_point(filled=True, size=160).encode(
        color=alt.Color(
            "kind:N",
            scale=alt.Scale(domain=list(colors), range=list(colors.values())),
        ),
        shape=alt.Shape("kind:N", legend=None),
    )
    labels = base.mark_text(align="left", dx=9, dy=-7).encode(text="name:N")
    return (dots + labels).properties(height=360)


def rank_evolution(metrics: pd.DataFrame) -> alt.Chart:
    """Effective and stable rank of the accumulated update over training steps, per run."""
    return (
        alt.Chart(metrics)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q"),
            y=alt.Y("value:Q", title="rank of the accumulated update"),
            color=alt.Color("run:N"),
            strokeDash=alt.StrokeDash("name:N", title="measure"),
            tooltip=["run", "name", "step", alt.Tooltip("value:Q", format=".3g")],
        )
        .properties(height=280)
    )


def subspace_trajectory(metrics: pd.DataFrame) -> alt.Chart:
    """Overlap of each interval's update with the previous one and with the final update."""
    named = metrics.assign(
        measure=metrics["name"].map(
            {
                "subspace/overlap_prev": "with the previous interval",
                "subspace/overlap_final": "with the final update",
            }
        )
    )
    return (
        alt.Chart(named)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q"),
            y=alt.Y("value:Q", title="overlap (mean cos²)", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("run:N"),
            strokeDash=alt.StrokeDash("measure:N"),
            tooltip=["run", "measure", "step", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=240)
    )


def generator_history(history: pd.DataFrame) -> alt.Chart:
    """A generator's training loss and its terms per step (log scale: the terms differ by
    orders of magnitude)."""
    long = history.melt(id_vars="step", var_name="term", value_name="value").dropna()
    long = long[long["value"] > 0]
    return (
        alt.Chart(long)
        .mark_line()
        .encode(
            x=alt.X("step:Q", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("value:Q", title="loss", scale=alt.Scale(type="log")),
            color=alt.Color("term:N", sort=["loss"]),
            tooltip=["term", "step", alt.Tooltip("value:Q", format=".4g")],
        )
        .properties(height=240)
    )
