"""How localized an update distribution is, and two models' profiles on normalized depth.

The metrics of seed 000 (SparseLLM-RL utils.py): the Gini coefficient (0 uniform … 1 everything
in one place), the entropy of the shares normalized by log n (1 uniform … 0 one place) and the
top-k concentration (share held by the k largest). Which distribution they describe is the
*basis*, and every figure says which:

- `block_changed` — changed weights per transformer block at one criterion (SubnetScope's own);
- `tensor_fro` — seed 000's: ‖ΔW‖_F of each tracked 2-D weight tensor
  (`compute_layer_update_distribution` over `get_layer_rank_stats`, which keeps the 2-D
  `…weight` parameters whose names hold one of the model's name-filter tokens). It does not
  depend on τ. A tied lm_head is not a parameter of its own, so it is not tracked.

Against the seed's functions on the same values: entropy and top-k agree (the seed adds 1e-10 to
the total and inside the log, which moves them by ~1e-10 relative); the Gini here is scaled by
n/(n−1) so that all-in-one gives exactly 1 (the seed's code logs G·(n−1)/n, given as
`gini_unscaled` for the seed basis). Undefined cases are NaN: fewer than two values, or a zero
total (an update that changed nothing). The seed's code returns 0.0 for all three there, which
reads as "uniform" for the Gini and "concentrated" for the entropy at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

DEFAULT_TOP_K = 3
DEFAULT_GRID = 21  # normalized depth 0, 0.05, …, 1

BLOCK_CHANGED, TENSOR_FRO = "block_changed", "tensor_fro"
BASES = {
    BLOCK_CHANGED: "changed weights per block",
    TENSOR_FRO: "seed 000: per-tensor ‖ΔW‖_F",
}
# SparseLLM-RL configs: GEMMA_NAME_FILTER for Gemma-3 / 3n, GPT2_NAME_FILTER for every other model.
GPT2_NAME_FILTER = ("attn", "mlp", "c_attn", "c_proj", "c_fc", "lm_head")
GEMMA_NAME_FILTER = (
    "self_attn",
    "mlp",
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
)


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
    """The three metrics of one distribution, with its size, k and how many values are > 0
    (the seed logs that as num_active_layers, counting values > 1e-10)."""
    x = _values(values)
    return {
        "n": int(x.size),
        "gini": gini(x),
        "entropy": normalized_entropy(x),
        "top_k": top_k_share(x, k),
        "k": int(min(k, x.size)),
        "active": int((x > 0).sum()),
    }


def seed_name_filter(family: str | None) -> tuple[str, ...]:
    """The name-filter tokens seed 000 tracks for a model family (layout.family)."""
    return GEMMA_NAME_FILTER if family and "gemma" in family.lower() else GPT2_NAME_FILTER


def seed_localization_tensors(table: pd.DataFrame, family: str | None = None) -> pd.DataFrame:
    """The rows of a diff's long table (one per tensor) that get_layer_rank_stats tracks: name
    ending in `weight`, 2-D (shape 'RxC'), holding one of the family's filter tokens. Unlike
    series.seed_tracked (state_dict checkpoints), a tied lm_head is not stood in for: the live
    model's named_parameters list it once, as the embedding."""
    if not {"tensor", "shape", "delta_norm"} <= set(table.columns):
        return table.iloc[:0].reindex(columns=["tensor", "layer", "delta_norm"])
    one = table.drop_duplicates("tensor")
    tokens = seed_name_filter(family)
    names = one["tensor"].astype(str)
    keep = (
        names.str.endswith("weight")
        & (one["shape"].astype(str).str.count("x") == 1)
        & names.map(lambda n: any(t in n for t in tokens))
    )
    return one[keep].reset_index(drop=True)


def tensor_fro_localization(
    table: pd.DataFrame, family: str | None = None, k: int = DEFAULT_TOP_K
) -> dict[str, float | str]:
    """Seed 000's localization: the metrics over ‖ΔW‖_F of each tracked tensor, with the Gini as
    the seed's code logs it (`gini_unscaled` = G·(n−1)/n) beside the scaled one."""
    values = seed_localization_tensors(table, family)["delta_norm"].to_numpy(dtype=np.float64)
    out: dict[str, float | str] = {"basis": TENSOR_FRO, **localization(values, k)}
    n = values.size
    out["gini_unscaled"] = out["gini"] * (n - 1) / n if n >= 2 else math.nan
    return out


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
