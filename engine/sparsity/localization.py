"""How localized an update distribution is, and two models' profiles on normalized depth.

Seed 000's localization metrics (SparseLLM-RL utils.py / localization_analysis.py): the Gini
coefficient (0 uniform … 1 everything in one layer), the entropy of the shares normalized by
log n (1 uniform … 0 one layer) and the top-k concentration (share held by the k largest).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

DEFAULT_TOP_K = 3
DEFAULT_GRID = 21  # normalized depth 0, 0.05, …, 1


def _values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if (x < 0).any() or not np.isfinite(x).all():
        raise ValueError("an update distribution needs finite values ≥ 0")
    return x


def gini(values: Sequence[float] | np.ndarray) -> float:
    """Gini coefficient normalized so that all-in-one gives 1: G·n/(n−1), with the standard
    G = Σᵢⱼ|xᵢ − xⱼ| / (2n Σx). NaN for fewer than two values or a zero total."""
    x = np.sort(_values(values))
    n, total = x.size, x.sum()
    if n < 2 or total == 0:
        return math.nan
    ranks = np.arange(1, n + 1)
    g = 2 * (ranks * x).sum() / (n * total) - (n + 1) / n  # the sorted form of the double sum
    return float(g * n / (n - 1))


def normalized_entropy(values: Sequence[float] | np.ndarray) -> float:
    """Shannon entropy of the shares over log n. NaN for fewer than two values or a zero total."""
    x = _values(values)
    n, total = x.size, x.sum()
    if n < 2 or total == 0:
        return math.nan
    p = x[x > 0] / total
    return float(max(0.0, -(p * np.log(p)).sum() / math.log(n)))  # no -0.0


def top_k_share(values: Sequence[float] | np.ndarray, k: int = DEFAULT_TOP_K) -> float:
    """Share of the total held by the k largest values (NaN for a zero total)."""
    x = _values(values)
    total = x.sum()
    if total == 0:
        return math.nan
    return float(np.sort(x)[::-1][:k].sum() / total)


def localization(values: Sequence[float] | np.ndarray, k: int = DEFAULT_TOP_K) -> dict[str, float]:
    """The three metrics of one distribution, with its size and k."""
    x = _values(values)
    return {
        "n": int(x.size),
        "gini": gini(x),
        "entropy": normalized_entropy(x),
        "top_k": top_k_share(x, k),
        "k": int(min(k, x.size)),
    }


def depth_profile(
    per_layer: Sequence[float] | np.ndarray, grid: int = DEFAULT_GRID
) -> pd.DataFrame:
    """Per-layer values placed at depth layer/(L−1) and linearly interpolated onto `grid`
    evenly spaced depths in [0, 1], so models with different layer counts line up."""
    y = _values(per_layer)
    depth = np.linspace(0.0, 1.0, grid)
    x = np.linspace(0.0, 1.0, y.size) if y.size > 1 else np.zeros(1)
    value = np.interp(depth, x, y) if y.size > 1 else np.full(grid, y[0] if y.size else np.nan)
    return pd.DataFrame({"depth": depth, "value": value})


def compare_distributions(
    runs: Mapping[str, Sequence[float] | np.ndarray],
    k: int = DEFAULT_TOP_K,
    grid: int = DEFAULT_GRID,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Localization of each run's per-layer distribution, and all runs on normalized depth.

    Profiles are shares (each run's values over its total), so a 12-layer and a 30-layer model
    compare on where their updates sit, not on how many they made.
    """
    metrics, profiles = [], []
    for label, values in runs.items():
        x = _values(values)
        metrics.append({"run": label, "layers": int(x.size), **localization(x, k)})
        total = x.sum()
        shares = x / total if total else x
        profile = depth_profile(shares, grid)
        profile.insert(0, "run", label)
        profiles.append(profile.rename(columns={"value": "share"}))
    metric_cols = ["run", "layers", "n", "gini", "entropy", "top_k", "k"]
    return (
        pd.DataFrame(metrics, columns=metric_cols).drop(columns="n"),
        pd.concat(profiles, ignore_index=True)
        if profiles
        else pd.DataFrame(columns=["run", "depth", "share"]),
    )
