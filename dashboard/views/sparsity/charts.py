"""The sparsity view's Altair charts: heatmaps, ranks, localization, coverage, depth, shells."""

from __future__ import annotations

import altair as alt
import pandas as pd


def update_heatmap_chart(blocks: pd.DataFrame) -> alt.Chart:
    """Block × module heatmap of changed fractions; layer −1 (outside the blocks) is 'other'.

    Every row and column is labelled: the axes list their values, never drop a label that would
    overlap and never truncate one. Streamlit's chart theme sets `labelOverlap: true` and
    `labelLimit: 100` on every axis, which hid every other module name (6 of the demo's 11)."""
    cells = blocks.assign(block=blocks["layer"].map(lambda x: "other" if x < 0 else str(x)))
    order = [*(str(i) for i in sorted(blocks["layer"].unique()) if i >= 0)]
    order += ["other"] if (blocks["layer"] < 0).any() else []
    modules = sorted(str(m) for m in blocks["module"].unique())
    return (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            x=alt.X(
                "block:O",
                title="block (layer)",
                sort=order,
                axis=alt.Axis(values=order, labelOverlap=False, labelAngle=0),
            ),
            y=alt.Y(
                "module:N",
                title=None,
                sort=modules,
                axis=alt.Axis(values=modules, labelOverlap=False, labelLimit=0),
            ),
            color=alt.Color(
                "fraction:Q", title="changed", scale=alt.Scale(scheme="viridis", domainMin=0)
            ),
            tooltip=[
                "block",
                "module",
                alt.Tooltip("changed:Q", format=","),
                alt.Tooltip("numel:Q", format=","),
                alt.Tooltip("fraction:Q", format=".3%"),
            ],
        )
        .properties(height=alt.Step(22))
    )


def seed_coverage_chart(seed: pd.DataFrame) -> alt.Chart:
    """Lines over a run's steps, one per τ: the seed's coverage of its final subnetwork."""
    data = seed.assign(tau=seed["tau"].map(lambda t: f"τ = {t:.0e}"))
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="step", axis=alt.Axis(format="~g")),
            y=alt.Y(
                "coverage:Q",
                title="coverage of the final subnetwork",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1.05]),
            ),
            color=alt.Color("tau:N", title=None),
            tooltip=[
                "step",
                "tau",
                alt.Tooltip("coverage:Q", format=".3%"),
                alt.Tooltip("fraction:Q", format=".4%", title="density"),
            ],
        )
        .properties(height=240)
    )


def rank_bars_chart(ranks: pd.DataFrame) -> alt.Chart:
    """Grouped bars: per module, the mean classical / effective / stable rank over max rank."""
    return (
        alt.Chart(ranks)
        .mark_bar()
        .encode(
            x=alt.X(
                "ratio:Q",
                title="rank / max rank (mean over blocks)",
                scale=alt.Scale(domain=[0, 1]),
            ),
            y=alt.Y("module:N", title=None),
            yOffset="measure:N",
            color=alt.Color("measure:N", title="rank"),
            tooltip=["module", "measure", alt.Tooltip("ratio:Q", format=".3f")],
        )
        .properties(height=alt.Step(30))
    )


def layer_distribution_chart(layers: pd.DataFrame) -> alt.Chart:
    """Bars: each block's changed fraction, with its share of all changed weights in the tooltip."""
    return (
        alt.Chart(layers)
        .mark_bar()
        .encode(
            x=alt.X("layer:O", title="block (layer)"),
            y=alt.Y("fraction:Q", title="changed fraction", axis=alt.Axis(format="%")),
            tooltip=[
                "layer",
                alt.Tooltip("changed:Q", format=","),
                alt.Tooltip("fraction:Q", format=".3%"),
                alt.Tooltip("share:Q", format=".1%", title="share of changes"),
            ],
        )
        .properties(height=220)
    )


def coverage_chart(steps: pd.DataFrame) -> alt.Chart:
    """Lines over a run's steps: coverage of the final mask, changed fraction, Jaccard."""
    long = steps.melt(
        id_vars=["step"],
        value_vars=[c for c in ("coverage", "fraction", "jaccard_prev") if c in steps],
        var_name="measure",
    )
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="step", axis=alt.Axis(format="~g")),
            y=alt.Y("value:Q", title=None, axis=alt.Axis(format="%")),
            color=alt.Color("measure:N", title=None),
            tooltip=["step", "measure", alt.Tooltip("value:Q", format=".3%")],
        )
        .properties(height=260)
    )


def depth_profile_chart(profiles: pd.DataFrame) -> alt.Chart:
    """Lines: each run's share of changed weights over normalized depth (0 first … 1 last)."""
    return (
        alt.Chart(profiles)
        .mark_line(point=True)
        .encode(
            x=alt.X("depth:Q", title="normalized depth", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("share:Q", title="share of changes"),
            color=alt.Color("run:N", title="run"),
            tooltip=[
                "run",
                alt.Tooltip("depth:Q", format=".2f"),
                alt.Tooltip("share:Q", format=".3f"),
            ],
        )
        .properties(height=260)
    )


def shell_bars_chart(shells: pd.DataFrame) -> alt.Chart:
    """Grouped bars: changed fraction per MatFormer shell and MLP weight (up / gate / down)."""
    return (
        alt.Chart(shells)
        .mark_bar()
        .encode(
            x=alt.X("shell:O", title="shell"),
            xOffset="role:N",
            y=alt.Y("fraction:Q", title="changed fraction", axis=alt.Axis(format="%")),
            color=alt.Color("role:N", title="weight"),
            tooltip=["shell", "role", "start", "stop", alt.Tooltip("fraction:Q", format=".3%")],
        )
        .properties(height=240)
    )
