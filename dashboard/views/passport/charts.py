"""Charts of the Neuron passport page: component weights, updates over steps, ΔW per role,
and the overlap matrix of neuron sets."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd


def component_z_chart(ica: pd.DataFrame) -> alt.Chart:
    """The neuron's z-scored mixing weight in each component of one templates file; key
    components stand out."""
    data = ica.assign(key=ica["key"].map({True: "key neuron", False: "not key"}))
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("component:O", title="component"),
            y=alt.Y("z:Q", title="z of its mixing weight"),
            color=alt.Color("key:N", title=None, scale=alt.Scale(range=["#d62728", "#bbbbbb"])),
            tooltip=[
                "templates",
                "component",
                "key",
                alt.Tooltip("weight:Q", format=".3f"),
                alt.Tooltip("z:Q", format="+.2f"),
                "rank",
            ],
        )
        .properties(height=200)
    )


def updates_chart(updates: pd.DataFrame) -> alt.Chart:
    """Changed share of the neuron's weights over each run's checkpoints, against its layer."""
    long = updates.melt(
        id_vars=["kind", "run", "step", "criterion"],
        value_vars=["mean", "layer_mean"],
        var_name="series",
        value_name="changed",
    )
    long["series"] = long["series"].map({"mean": "this neuron", "layer_mean": "layer mean"})
    long["run"] = long["kind"] + " " + long["run"].fillna("").str[-6:] + " · τ " + long["criterion"]
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="checkpoint step"),
            y=alt.Y("changed:Q", title="changed share", axis=alt.Axis(format="%")),
            color=alt.Color("run:N", title="run"),
            strokeDash=alt.StrokeDash("series:N", title=None),
            tooltip=["run", "step", "series", alt.Tooltip("changed:Q", format=".2%")],
        )
        .properties(height=220)
    )


def adapter_roles_chart(adapters: pd.DataFrame) -> alt.Chart:
    long = adapters.melt(
        id_vars=["adapter"], value_vars=["up", "gate", "down"], var_name="role", value_name="norm"
    )
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("norm:Q", title="‖ΔW‖ on its row (up, gate) / column (down)"),
            y=alt.Y("adapter:N", title=None),
            color=alt.Color("role:N"),
            yOffset="role:N",
            tooltip=["adapter", "role", alt.Tooltip("norm:Q", format=".4f")],
        )
        .properties(height=alt.Step(10))
    )


def overlap_matrix_chart(pairs: pd.DataFrame, order: list[str], value: str) -> alt.Chart:
    """Symmetric matrix of sets: colour = `value` (jaccard or −log10 q), text = shared count,
    a ring where the layered q-value is below 0.05."""
    both = pd.concat(
        [pairs, pairs.rename(columns={"a": "b", "b": "a", "size_a": "size_b", "size_b": "size_a"})]
    )
    both = both.assign(
        neglog_q=-np.log10(both["q_layered"].clip(lower=1e-300)),
        significant=both["q_layered"] < 0.05,
    )
    title = "Jaccard" if value == "jaccard" else "−log10 q (layered)"
    field = "jaccard" if value == "jaccard" else "neglog_q"
    base = alt.Chart(both).encode(
        x=alt.X("a:N", sort=order, title=None, axis=alt.Axis(labelAngle=-45, labelOverlap=False)),
        y=alt.Y("b:N", sort=order, title=None),
    )
    tooltip = [
        "a",
        "b",
        "size_a",
        "size_b",
        "shared",
        alt.Tooltip("expected:Q", format=".2f"),
        alt.Tooltip("jaccard:Q", format=".4f"),
        alt.Tooltip("p_value:Q", format=".2e"),
        alt.Tooltip("p_layered:Q", format=".2e"),
        alt.Tooltip("q_layered:Q", format=".2e"),
    ]
    cells = base.mark_rect().encode(
        color=alt.Color(f"{field}:Q", title=title, scale=alt.Scale(scheme="viridis")),
        tooltip=tooltip,
    )
    rings = base.transform_filter("datum.significant").mark_point(
        shape="square", size=260, filled=False, color="#ff4b4b", strokeWidth=1.5
    )
    middle = float(both[field].max()) / 2 if len(both) else 0.0
    text = base.mark_text(fontSize=9).encode(
        text="shared:Q",
        color=alt.condition(f"datum.{field} > {middle}", alt.value("black"), alt.value("white")),
    )
    step = 30 if len(order) <= 16 else 22
    return (cells + rings + text).properties(width=alt.Step(step), height=alt.Step(step))


def overlap_layers_chart(layers: pd.DataFrame) -> alt.Chart:
    long = layers.melt(
        id_vars=["layer"], value_vars=["shared", "expected"], var_name="what", value_name="count"
    )
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("layer:O"),
            y=alt.Y("count:Q", title="neurons", stack=None),
            color=alt.Color("what:N", title=None, scale=alt.Scale(range=["#1f77b4", "#cccccc"])),
            opacity=alt.value(0.8),
            tooltip=["layer", "what", alt.Tooltip("count:Q", format=".2f")],
        )
        .properties(height=200)
    )
