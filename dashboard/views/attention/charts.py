"""Altair charts of the Attention page: per-head heatmaps, an attention map, the sweep's ranking,
statistics against context length."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

KIND_MARK = {"local": "L", "global": "G"}


def _layer_labels(frame: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """'12 · G' / '3 · L' per row (the layer and whether it is local or global), and their order."""
    labels = frame["layer"].astype(str) + " · " + frame["kind"].map(KIND_MARK).fillna("?")
    order = list(dict.fromkeys(labels[frame["layer"].argsort(kind="stable")]))
    return labels, order


def _layer_head_cells(frame: pd.DataFrame, column: str, title: str, scale: alt.Scale) -> alt.Chart:
    """Layer × head cells coloured by `column`; the layer axis says L (local) or G (global)."""
    labels, order = _layer_labels(frame)
    return (
        alt.Chart(frame.assign(layer_label=labels))
        .mark_rect()
        .encode(
            x=alt.X("head:O", title="head"),
            y=alt.Y("layer_label:O", title="layer · L local / G global", sort=order),
            color=alt.Color(f"{column}:Q", title=title, scale=scale),
            tooltip=[
                "layer",
                "head",
                "kind",
                alt.Tooltip(f"{column}:Q", title=title, format=".4g"),
            ],
        )
        .properties(height=alt.Step(14))
    )


def head_heatmap(frame: pd.DataFrame, stat: str, title: str) -> alt.Chart:
    """Layer × head cells coloured by the statistic `stat`."""
    return _layer_head_cells(frame, stat, title, alt.Scale(scheme="viridis"))


def delta_heatmap(frame: pd.DataFrame, column: str, title: str) -> alt.Chart:
    """Layer × head cells coloured by the tuned − base difference, centred on zero."""
    scale = alt.Scale(scheme="redblue", domainMid=0, reverse=True)
    return _layer_head_cells(frame, column, title, scale)


def _token_label(i: int, token: str) -> str:
    shown = token.replace("\n", "⏎").strip() or "␣"
    return f"{i} {shown[:12]}"


def attention_map_chart(tokens: list[str], probs: np.ndarray) -> alt.Chart:
    """One head's attention, query (rows) × key (columns), the tokens on both axes; only the
    causal half (key ≤ query) exists."""
    labels = [_token_label(i, t) for i, t in enumerate(tokens)]
    q, k = np.tril_indices(len(tokens))
    frame = pd.DataFrame(
        {"query": [labels[i] for i in q], "key": [labels[j] for j in k], "p": probs[q, k]}
    )
    return (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=alt.X("key:O", sort=labels, title="key (attended to)"),
            y=alt.Y("query:O", sort=labels, title="query"),
            color=alt.Color("p:Q", title="attention", scale=alt.Scale(scheme="greys")),
            tooltip=["query", "key", alt.Tooltip("p:Q", format=".3f")],
        )
        .properties(height=alt.Step(12), width=alt.Step(12))
    )


def sweep_chart(sweep: pd.DataFrame) -> alt.Chart:
    """The loss of making each layer local: Δ NLL per layer (bars side by side per window)."""
    shown = sweep.assign(window=sweep["window"].astype(str))
    return (
        alt.Chart(shown)
        .mark_bar()
        .encode(
            x=alt.X("layer:O", title="layer made local"),
            xOffset="window:N",
            y=alt.Y("delta_nll:Q", title="Δ NLL (nats per token)"),
            color=alt.Color("window:N", title="window"),
            tooltip=[
                "layer",
                "window",
                "rank",
                alt.Tooltip("delta_nll:Q", format=".4f"),
                alt.Tooltip("perplexity:Q", format=".3f"),
            ],
        )
        .properties(height=260)
    )


def context_chart(frame: pd.DataFrame, stat: str, title: str, by: str) -> alt.Chart:
    """A statistic (mean over heads) against the text length, one line per `by` (kind or layer)."""
    color = (
        alt.Color("layer:O", title="layer", scale=alt.Scale(scheme="viridis"))
        if by == "layer"
        else alt.Color("kind:N", title="layers")
    )
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("length:Q", title="text length (tokens)", scale=alt.Scale(type="log", base=2)),
            y=alt.Y(f"{stat}:Q", title=title),
            color=color,
            tooltip=[by, "length", alt.Tooltip(f"{stat}:Q", title=title, format=".4g")],
        )
        .properties(height=280)
    )
