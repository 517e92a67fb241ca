"""Localization across models (seed 000's localization step): metrics and depth profiles.

A run is `[LABEL=]BASE:TUNED` (diffed, or read from the cache) or a long-format parquet saved by
`sparsity diff --out`. Each run's per-layer update distribution gets Gini, normalized entropy
and top-k concentration; the profiles are placed on normalized depth layer/(L−1) so a 12-layer
GPT-2 and a 30-layer Gemma-3n line up. Beside them, `seed_*` columns give the same metrics on
seed 000's basis, ‖ΔW‖_F of each tracked tensor (localization.py); a parquet run has no model
config, so its tensors are filtered with the seed's default (GPT-2) tokens. Runs diffed here
whose masks cover the same tensors (say SFT and RL from one base) also get their overlap:
Jaccard of the update masks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from engine.errors import SubnetScopeError
from engine.sparsity.config import DiffConfig
from engine.sparsity.diff import diff
from engine.sparsity.localization import (
    DEFAULT_GRID,
    DEFAULT_TOP_K,
    compare_distributions,
    tensor_fro_localization,
)
from engine.sparsity.masks import overlap_table, overlap_totals
from engine.sparsity.result import DiffResult
from engine.sparsity.tables import LONG_COLUMNS, counts, per_layer


@dataclass
class CompareResult:
    # run, layers, gini, entropy, top_k, k, changed, fraction, and seed 000's basis:
    # seed_tensors, seed_gini, seed_gini_unscaled, seed_entropy, seed_top_k
    metrics: pd.DataFrame
    profiles: pd.DataFrame  # run, depth, share
    layers: pd.DataFrame  # run, layer, depth, numel, changed, fraction, share
    overlap: pd.DataFrame  # run_a, run_b, tensors, a, b, both, jaccard (pairs with masks)

    def summary(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics.to_dict(orient="records"),
            "profiles": self.profiles.to_dict(orient="records"),
            "overlap": self.overlap.to_dict(orient="records"),
        }


def parse_run(spec: str) -> tuple[str, str | None, str]:
    """'[LABEL=]BASE:TUNED' or '[LABEL=]FILE.parquet' → (label, base or None, tuned or file)."""
    label, sep, rest = spec.partition("=")
    if not sep or Path(spec).exists():
        label, rest = "", spec
    if rest.endswith(".parquet") or Path(rest).is_file():
        return label or Path(rest).stem, None, rest
    base, sep, tuned = rest.partition(":")
    if not sep or not base or not tuned:
        raise SubnetScopeError(
            f"a run is BASE:TUNED or a .parquet table saved by `sparsity diff --out`, not '{spec}'"
        )
    return label or Path(tuned).name or tuned, base, tuned


def load_run_table(
    spec: str, config: DiffConfig
) -> tuple[str, pd.DataFrame, int | None, DiffResult | None]:
    """A run's label, long table, layer count (None: read off the table) and diff, if diffed."""
    label, base, tuned = parse_run(spec)
    if base is None:
        try:
            table = pd.read_parquet(tuned)
        except (OSError, ValueError) as exc:
            raise SubnetScopeError(f"cannot read the diff table '{tuned}'") from exc
        required = ("tensor", "layer", "numel", "tolerance", "changed")
        if missing := [c for c in required if c not in table]:
            raise SubnetScopeError(f"'{tuned}' is not a diff table (no {', '.join(missing)})")
        return label, table.reindex(columns=[c for c in LONG_COLUMNS if c in table]), None, None
    result = diff(base, tuned, config)
    return label, result.tensors, result.layout.num_layers, result


def mask_overlap(diffs: dict[str, DiffResult]) -> pd.DataFrame:
    """Jaccard of the update masks of every pair of runs over the tensors they share."""
    rows = []
    for (name_a, a), (name_b, b) in itertools.combinations(diffs.items(), 2):
        common = [n for n in a.masks.names if b.masks.shapes.get(n) == a.masks.shapes[n]]
        if not common or a.masks.criterion != b.masks.criterion:
            continue
        totals = overlap_totals(overlap_table(a.masks, b.masks, common))
        del totals["coverage"]
        rows.append({"run_a": name_a, "run_b": name_b, "tensors": len(common), **totals})
    return pd.DataFrame(rows, columns=["run_a", "run_b", "tensors", "a", "b", "both", "jaccard"])


def compare_runs(
    runs: list[str],
    config: DiffConfig | None = None,
    *,
    criterion: str | float | None = None,
    basis: str = "count",
    k: int = DEFAULT_TOP_K,
    grid: int = DEFAULT_GRID,
) -> CompareResult:
    """Localization of each run's per-layer distribution of changed weights, and on seed 000's
    basis (the `seed_*` columns: ‖ΔW‖_F of each tracked tensor, whatever `basis` says).

    basis 'count': changed weights per block (SubnetScope's basis, not the seed's);
    'fraction': each block's changed fraction, so wider blocks do not weigh more.
    """
    if basis not in ("count", "fraction"):
        raise SubnetScopeError(f"basis is 'count' or 'fraction', not '{basis}'")
    config = config or DiffConfig()
    distributions, per_run, totals, diffs, seed = {}, [], {}, {}, {}
    for spec in runs:
        label, table, num_layers, result = load_run_table(spec, config)
        if label in distributions:
            label = f"{label}#{len(distributions)}"
        if result is not None:
            diffs[label] = result
        per_tensor = counts(table, config.mask_criterion if criterion is None else criterion)
        layers = per_layer(per_tensor, num_layers)
        if layers.empty:
            raise SubnetScopeError(f"run '{label}' has no tensors inside transformer blocks")
        values = layers["changed"] if basis == "count" else layers["fraction"].fillna(0.0)
        distributions[label] = values.to_numpy(dtype=float)
        n = len(layers)
        layers = layers.assign(run=label, depth=layers["layer"] / max(n - 1, 1))
        layers["share"] = values / values.sum() if values.sum() else 0.0
        per_run.append(layers[["run", "layer", "depth", "numel", "changed", "fraction", "share"]])
        changed, numel = int(per_tensor["changed"].sum()), int(per_tensor["numel"].sum())
        family = result.layout.family if result is not None else None
        seed[label] = tensor_fro_localization(table, family, k)
        totals[label] = {"changed": changed, "fraction": changed / numel if numel else None}
    metrics, profiles = compare_distributions(distributions, k, grid)
    metrics["changed"] = metrics["run"].map(lambda r: totals[r]["changed"])
    metrics["fraction"] = metrics["run"].map(lambda r: totals[r]["fraction"])
    metrics["seed_tensors"] = metrics["run"].map(lambda r: seed[r]["n"])
    for name in ("gini", "gini_unscaled", "entropy", "top_k"):
        metrics[f"seed_{name}"] = metrics["run"].map(lambda r, m=name: seed[r][m])
    layers = pd.concat(per_run, ignore_index=True)
    return CompareResult(metrics, profiles, layers, mask_overlap(diffs))
