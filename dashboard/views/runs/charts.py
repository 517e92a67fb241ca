"""The Runs view's charts: a job's memory over its run (its `resources` events)."""

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
