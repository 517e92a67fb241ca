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


def effects(single: pd.DataFrame) -> alt.Chart:
    """Each candidate's single-ablation effect (log-probability its removal costs the unpruned
    completions, less what it costs the control's), strongest first, coloured by whether it is in
    the causal set / planted."""
    data = single.copy()
    causal = data["causal"] if "causal" in data else [False] * len(data)
    planted = data["planted"] if "planted" in data else [False] * len(data)
    data["kind"] = [
        ("causal" if c else "not causal") + (", planted" if p else "")
        for c, p in zip(causal, planted, strict=True)
    ]
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("order:O", title="candidates, strongest effect first", axis=None),
            y=alt.Y("specific_drop:Q", title="specific log-prob drop, ablated alone (nats/token)"),
            color=alt.Color("kind:N", title=None),
            tooltip=[
                "layer",
                "neuron",
                "kind",
                alt.Tooltip("specific_drop:Q", format=".4f"),
                alt.Tooltip("logprob_drop:Q", format=".4f"),
                alt.Tooltip("control_drop:Q", format=".4f"),
            ],
        )
        .properties(height=220)
    )
