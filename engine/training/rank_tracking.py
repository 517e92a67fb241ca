"""Rank evolution of the accumulated update ΔW_total = W_now − W_start per target module.

Every few steps each run records, per module, the effective rank (Roy & Vetterli), the stable
rank and ‖ΔW‖_F; the means over modules go out as `rank/effective` and `rank/stable` metric
events, and every row ends up in the result table `rank_evolution.parquet`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from engine.jobs import JobContext
from engine.lora.adapters import module_kind, module_layer
from engine.lora.lowrank import Factors, effective_rank, frobenius, singular_values, stable_rank

RANK_TABLE = "rank_evolution.parquet"
COLUMNS = ("step", "module", "layer", "kind", "effective_rank", "stable_rank", "norm")


def dense_singular_values(delta: torch.Tensor) -> np.ndarray:
    """Singular values of a dense (d_out, d_in) update, descending, in float32."""
    from scipy.linalg import svdvals

    matrix = delta.detach().to("cpu", torch.float32).numpy()
    if not np.any(matrix):
        return np.zeros(0, dtype=np.float32)
    return svdvals(matrix, check_finite=False)


def spectrum_row(step: int, module: str, sv) -> dict:
    """One table row from a module's singular values."""
    s = torch.as_tensor(np.asarray(sv, dtype=np.float64))
    return {
        "step": int(step),
        "module": module,
        "layer": module_layer(module),
        "kind": module_kind(module),
        "effective_rank": effective_rank(s),
        "stable_rank": stable_rank(s),
        "norm": float(torch.linalg.vector_norm(s)) if s.numel() else 0.0,
    }


@dataclass
class RankTracker:
    """Collects rank rows over a run and reports each step's means as metric events."""

    ctx: JobContext
    rows: list[dict] = field(default_factory=list)

    def record_dense(self, step: int, deltas: Mapping[str, torch.Tensor]) -> dict:
        """Ranks of dense accumulated updates, one per module path."""
        from threadpoolctl import threadpool_limits

        # LAPACK gets the threads torch has (the job runner caps those), never the machine's.
        with threadpool_limits(limits=torch.get_num_threads()):
            rows = [spectrum_row(step, m, dense_singular_values(d)) for m, d in deltas.items()]
        return self._log(step, rows)

    def record_factors(self, step: int, factors: Mapping[str, Factors]) -> dict:
        """Ranks of LoRA updates computed exactly from their factors (no dense matrix)."""
        rows = []
        for module, f in factors.items():
            row = spectrum_row(step, module, singular_values(f).detach().cpu().numpy())
            row["norm"] = frobenius(f)
            rows.append(row)
        return self._log(step, rows)

    def _log(self, step: int, rows: list[dict]) -> dict:
        self.rows.extend(rows)
        means = {
            "effective": float(np.mean([r["effective_rank"] for r in rows])) if rows else 0.0,
            "stable": float(np.mean([r["stable_rank"] for r in rows])) if rows else 0.0,
            "norm": float(np.sqrt(sum(r["norm"] ** 2 for r in rows))),
        }
        self.ctx.metric("rank/effective", means["effective"], step=step)
        self.ctx.metric("rank/stable", means["stable"], step=step)
        self.ctx.metric("rank/norm", means["norm"], step=step)
        return {"step": int(step), **means}

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    def write(self) -> None:
        self.ctx.write_table(RANK_TABLE, self.table())

    def summary(self) -> list[dict]:
        """Per recorded step: the means over modules (for run.json)."""
        table = self.table()
        if table.empty:
            return []
        grouped = table.groupby("step").agg(
            effective_rank=("effective_rank", "mean"),
            stable_rank=("stable_rank", "mean"),
            max_effective_rank=("effective_rank", "max"),
            norm=("norm", lambda n: float(np.sqrt((n**2).sum()))),
        )
        return [
            {"step": int(step), **{k: float(v) for k, v in row.items()}}
            for step, row in grouped.iterrows()
        ]
