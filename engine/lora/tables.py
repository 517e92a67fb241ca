"""Summaries of the per-module geometry table for charts: norms per layer, ranks per kind."""

from __future__ import annotations

import numpy as np
import pandas as pd


def norms_by_layer(geometry: pd.DataFrame) -> pd.DataFrame:
    """‖ΔW‖_F of each layer's modules taken together, per adapter: sqrt(Σ_modules ‖ΔW‖²)."""
    frame = geometry.dropna(subset=["layer"]).assign(sq=lambda t: t["norm"].astype(float) ** 2)
    out = frame.groupby(["adapter", "layer"], as_index=False, sort=True)["sq"].sum()
    out["norm"] = np.sqrt(out.pop("sq"))
    out["layer"] = out["layer"].astype(int)
    return out


def ranks_by_kind(geometry: pd.DataFrame) -> pd.DataFrame:
    """Mean effective and stable rank of each adapter's modules of one kind (q_proj, ...)."""
    return geometry.groupby(["adapter", "kind"], as_index=False, sort=True)[
        ["effective_rank", "stable_rank"]
    ].mean()
