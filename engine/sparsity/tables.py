"""The diff's tables: the long per-tensor table, counts under one criterion, block × module sums.

Long table: one row per (tensor, tolerance), with the criterion-free facts (exact and bf16
counts, norms) repeated on each row, so one parquet answers every heatmap switch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.sparsity.config import BF16, EXACT, parse_criterion, tolerance_key
from engine.sparsity.layout import TensorLayout
from engine.sparsity.ranks import RankStats
from engine.sparsity.stats import TensorStats

PLACE_COLUMNS = ["tensor", "layer", "module", "role", "param"]
LONG_COLUMNS = [
    *PLACE_COLUMNS,
    "shape",
    "dtype",
    "numel",
    "tolerance",
    "changed",
    "fraction",
    "exact_changed",
    "exact_fraction",
    "bf16_changed",
    "bf16_fraction",
    "delta_norm",
    "base_norm",
    "rel_norm",
    "max_abs_delta",
]
RANK_COLUMNS = [
    *PLACE_COLUMNS,
    "rows",
    "cols",
    "method",
    "rank",
    "max_rank",
    "rank_tol",
    "effective_rank",
    "stable_rank",
    "sigma_max",
    "delta_norm",
    "reason",
]


def _fraction(changed: int, numel: int) -> float:
    return changed / numel if numel else math.nan


def long_table(
    stats: Sequence[TensorStats], layout: TensorLayout, tolerances: Sequence[float]
) -> pd.DataFrame:
    rows = []
    for s in stats:
        place = layout.place(s.name)
        delta_norm, base_norm = math.sqrt(s.delta_sq), math.sqrt(s.base_sq)
        shared = {
            "tensor": s.name,
            "layer": place.layer,
            "module": place.module,
            "role": place.role,
            "param": place.param,
            "shape": "x".join(map(str, s.shape)),
            "dtype": s.dtype if s.dtype == s.tuned_dtype else f"{s.dtype}->{s.tuned_dtype}",
            "numel": s.numel,
            "exact_changed": s.changed[EXACT],
            "exact_fraction": _fraction(s.changed[EXACT], s.numel),
            "bf16_changed": s.changed[BF16],
            "bf16_fraction": _fraction(s.changed[BF16], s.numel),
            "delta_norm": delta_norm,
            "base_norm": base_norm,
            "rel_norm": delta_norm / base_norm if base_norm else math.nan,
            "max_abs_delta": s.max_abs,
        }
        for tau in tolerances:
            changed = s.changed[tolerance_key(tau)]
            rows.append(
                shared
                | {
                    "tolerance": float(tau),
                    "changed": changed,
                    "fraction": _fraction(changed, s.numel),
                }
            )
    table = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return table.astype(
        {
            "layer": "int64",
            "numel": "int64",
            "changed": "int64",
            "exact_changed": "int64",
            "bf16_changed": "int64",
        }
    )


def rank_table(stats: Sequence[TensorStats], layout: TensorLayout) -> pd.DataFrame:
    rows = []
    for s in stats:
        r: RankStats | None = s.ranks
        if r is None:
            continue
        place = layout.place(s.name)
        rows.append(
            {
                "tensor": s.name,
                "layer": place.layer,
                "module": place.module,
                "role": place.role,
                "param": place.param,
                "rows": s.shape[0],
                "cols": s.shape[1],
                "method": r.method,
                "rank": r.rank,
                "max_rank": min(s.shape),
                "rank_tol": r.rank_tol,
                "effective_rank": r.effective_rank,
                "stable_rank": r.stable_rank,
                "sigma_max": r.sigma_max,
                "delta_norm": math.sqrt(s.delta_sq),
                "reason": r.reason,
            }
        )
    table = pd.DataFrame(rows, columns=RANK_COLUMNS)
    return table.astype({"rank": "Int64"})


def counts(table: pd.DataFrame, criterion: str | float) -> pd.DataFrame:
    """One row per tensor: its place, numel, norms and `changed` / `fraction` under a criterion
    ('exact', 'bf16', or one of the table's tolerances)."""
    label = parse_criterion(criterion)
    if label in (EXACT, BF16):
        out = table.drop_duplicates("tensor").copy()
        out["changed"] = out[f"{label}_changed"]
    else:
        tau = float(label)
        have = sorted(table["tolerance"].unique())
        match = [t for t in have if math.isclose(t, tau, rel_tol=1e-9)]
        if not match:
            from engine.errors import SubnetScopeError

            raise SubnetScopeError(
                f"tolerance {label} was not computed; this diff has {', '.join(map(str, have))}"
            )
        out = table[table["tolerance"] == match[0]].copy()
    out["fraction"] = out["changed"] / out["numel"].where(out["numel"] > 0)
    out["criterion"] = label
    keep = [*PLACE_COLUMNS, "numel", "changed", "fraction", "delta_norm", "base_norm", "criterion"]
    return out.reindex(columns=keep).reset_index(drop=True)  # a minimal table lacks norms


def aggregate(per_tensor: pd.DataFrame, by: Sequence[str] = ("layer", "module")) -> pd.DataFrame:
    """Sums over groups of a `counts` table: numel, changed, fraction, and the relative update
    norm √ΣΔ² / √ΣW² of the group (not a mean of ratios)."""
    by = list(by)
    work = per_tensor.assign(
        delta_sq=per_tensor["delta_norm"] ** 2, base_sq=per_tensor["base_norm"] ** 2
    )
    grouped = work.groupby(by, sort=True, dropna=False)
    out = grouped.agg(
        tensors=("tensor", "count"),
        numel=("numel", "sum"),
        changed=("changed", "sum"),
        delta_sq=("delta_sq", "sum"),
        base_sq=("base_sq", "sum"),
    ).reset_index()
    out["fraction"] = out["changed"] / out["numel"].where(out["numel"] > 0)
    out["rel_norm"] = np.sqrt(out["delta_sq"]) / np.sqrt(out["base_sq"].where(out["base_sq"] > 0))
    return out.drop(columns=["delta_sq", "base_sq"])


def per_layer(per_tensor: pd.DataFrame, num_layers: int | None = None) -> pd.DataFrame:
    """Block totals for layers 0..L−1 (tensors outside the blocks left out), every layer listed."""
    blocks = per_tensor[per_tensor["layer"] >= 0]
    table = aggregate(blocks, by=["layer"])
    n = (
        num_layers
        if num_layers is not None
        else int(blocks["layer"].max()) + 1
        if len(blocks)
        else 0
    )
    full = pd.DataFrame({"layer": np.arange(n, dtype=np.int64)})
    table = full.merge(table, on="layer", how="left")
    return table.fillna({"tensors": 0, "numel": 0, "changed": 0}).astype(
        {"tensors": "int64", "numel": "int64", "changed": "int64"}
    )


def layer_fractions(per_tensor: pd.DataFrame, num_layers: int | None = None) -> list[float]:
    """`per_layer(per_tensor, num_layers)["fraction"]` without pandas' groupby and merge (a diff
    asks for it once per criterion; numpy's bincount takes ~1 ms where those took ~25): changed /
    numel per block layer, NaN where a layer has no weights."""
    blocks = per_tensor[per_tensor["layer"] >= 0]
    layer = blocks["layer"].to_numpy(np.int64)
    n = num_layers if num_layers is not None else int(layer.max()) + 1 if len(layer) else 0
    numel = np.bincount(layer, weights=blocks["numel"].to_numpy(np.float64), minlength=n)
    changed = np.bincount(layer, weights=blocks["changed"].to_numpy(np.float64), minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(numel > 0, changed / numel, np.nan)
    return fraction[:n].tolist()
