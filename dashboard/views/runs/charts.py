"""The Runs view's charts: a job's memory over its run (its `resources` events), and a training
job's per-layer diagnostics and memorization."""

from __future__ import annotations

import altair as alt
import pandas as pd

# The columns of a resources event drawn as memory lines, and their legend names.
MEMORY_SERIES = {
    "rss_gb": "resident (VmRSS)",
    "peak_rss_gb": "peak resident (VmHWM)",
    "gpu_gb": "GPU allocated",
    "gpu_peak_gb": "GPU peak allocated",
}


def resources_chart(samples: pd.DataFrame) -> alt.Chart:
    """Lines: each memory series of the samples (GB) against seconds since the job started."""
    present = [c for c in MEMORY_SERIES if c in samples and samples[c].notna().any()]
    long = samples.melt(id_vars=["seconds"], value_vars=present, var_name="series").dropna()
    long["series"] = long["series"].map(MEMORY_SERIES)
    return (
        alt.Chart(long)
        .mark_line(point=True, interpolate="step-after")
        .encode(
            x=alt.X("seconds:Q", title="seconds"),
            y=alt.Y("value:Q", title="GB"),
            color=alt.Color("series:N", title="memory", sort=list(MEMORY_SERIES.values())),
            tooltip=[
                "series",
                alt.Tooltip("seconds:Q", format=".1f"),
                alt.Tooltip("value:Q", format=".3f", title="GB"),
            ],
        )
        .properties(height=160)
    )


# What each per-layer statistic is (engine/training/diagnostics.py), for the picker and legend.
DIAGNOSTIC_LABELS = {
    "grad_norm": "gradient norm (before clipping)",
    "update_norm": "update norm ‖Δθ‖ of the step",
    "param_norm": "parameter norm",
    "act_mean": "block output: mean",
    "act_std": "block output: std",
    "act_rms": "block output: RMS",
}


def layer_heatmap(frame: pd.DataFrame, kind: str) -> alt.Chart:
    """Layer × step cells coloured by one statistic (engine.training.layer_table's columns
    step, layer, value); norms on a log scale, since layers differ by orders of magnitude."""
    log = kind in ("grad_norm", "update_norm", "param_norm", "act_rms", "act_std")
    shown = frame[frame["value"] > 0] if log else frame
    scale = alt.Scale(type="log", scheme="viridis") if log else alt.Scale(scheme="redblue")
    return (
        alt.Chart(shown)
        .mark_rect()
        .encode(
            x=alt.X("step:O", title="step"),
            y=alt.Y("layer:O", title="layer", sort="descending"),
            color=alt.Color("value:Q", title=DIAGNOSTIC_LABELS.get(kind, kind), scale=scale),
            tooltip=["step", "layer", alt.Tooltip("value:Q", format=".4g")],
        )
        .properties(height=max(160, 9 * frame["layer"].nunique()))
    )


def memorization_chart(memo: pd.DataFrame) -> alt.HConcatChart:
    """Left: mean loss of training (member) and held-back texts over steps; right: the
    loss-threshold attack's advantage and AUC (engine.training memorization.parquet)."""
    losses = memo.melt(
        id_vars=["step"], value_vars=["train_loss", "heldout_loss"], var_name="texts"
    ).replace({"train_loss": "training texts", "heldout_loss": "held-back texts"})
    attack = memo.melt(
        id_vars=["step"], value_vars=["advantage", "chance_advantage", "auc"], var_name="measure"
    ).replace({"chance_advantage": "advantage by chance (95 %)"})
    left = (
        alt.Chart(losses)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("value:Q", title="mean loss (nats/token)", scale=alt.Scale(zero=False)),
            color=alt.Color("texts:N", title=None),
            tooltip=["step", "texts", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(height=200, width=280)
    )
    right = (
        alt.Chart(attack)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("value:Q", title="membership inference", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("measure:N", title=None),
            tooltip=["step", "measure", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=200, width=280)
    )
    return alt.hconcat(left, right).resolve_scale(color="independent")
