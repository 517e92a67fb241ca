"""Rank evolution of the accumulated update ΔW_total = W_now − W_start per target module, and
the subspace trajectory of the updates.

Every few steps each run records, per module, the effective rank (Roy & Vetterli), the stable
rank and ‖ΔW‖_F; the means over modules go out as `rank/effective` and `rank/stable` metric
events, and every row ends up in the result table `rank_evolution.parquet`.

The same records give the subspace trajectory (seed 003: "visualize the subspace trajectory"):
the update made between two records, D_t = ΔW_total(t) − ΔW_total(t_prev), has a column space
(what it writes, "out") and a row space (what it reads, "in"); their top-k singular directions
(k = min(SUBSPACE_K, its numerical rank)) are compared with the previous interval's and with the
final accumulated update's through principal angles (scipy.linalg.subspace_angles). `overlap` is
the mean cos² of the angles: 1 = the same subspace, 0 = orthogonal. Rows go to
`subspaces.parquet`, the means to `subspace/overlap_prev` and `subspace/overlap_final` metrics.
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
SUBSPACE_TABLE = "subspaces.parquet"
SUBSPACE_K = 8  # singular directions compared per update
SUBSPACE_TOLERANCE = 1e-6  # directions below this share of the largest singular value are noise
DENSE_TOLERANCE = 1e-3  # dense increments: float32 rounding of W − W_start sits near 1e-4 of σ₁
SUBSPACE_COLUMNS = (
    "step",
    "module",
    "layer",
    "kind",
    "side",  # "out": column space (what the update writes); "in": row space (what it reads)
    "dim",
    "overlap_prev",  # mean cos² of the principal angles with the previous interval's update
    "angle_prev_max",  # the largest of those angles, degrees
    "overlap_final",  # mean cos² with the final accumulated update's top directions
)


def principal_overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean cos² of the principal angles between span(a) and span(b), and the largest angle in
    degrees (a, b: orthonormal columns)."""
    from scipy.linalg import subspace_angles

    if a.shape[1] == 0 or b.shape[1] == 0:
        return float("nan"), float("nan")
    angles = subspace_angles(a, b)
    return float(np.mean(np.cos(angles) ** 2)), float(np.degrees(angles.max()))


def _top(
    u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, floor: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    if not s.numel() or s[0] <= 0:
        keep = 0
    else:
        keep = int((s > max(SUBSPACE_TOLERANCE * float(s[0]), floor)).sum())
    keep = min(keep, SUBSPACE_K)
    return (
        u[:, :keep].to(torch.float64).numpy(),
        vh[:keep].T.to(torch.float64).numpy(),
    )


def dense_directions(delta: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Top column-space and row-space directions of a dense update: (d_out, k), (d_in, k)."""
    u, s, vh = torch.linalg.svd(delta.detach().to("cpu", torch.float32), full_matrices=False)
    # A dense increment is a difference of float32 weights: their rounding adds a flat floor of
    # noise directions (1.4e-4 of σ₁ for five rank-1 steps of 1e-3 on N(0, 0.05²) weights,
    # 576×1536), which the exact tolerance would count as directions.
    floor = DENSE_TOLERANCE * float(s[0]) if s.numel() else 0.0
    return _top(u, s, vh, floor)


def factor_directions(f: Factors) -> tuple[np.ndarray, np.ndarray]:
    """The same from LoRA factors, exactly and without the dense matrix."""
    from engine.lora.lowrank import lowrank_svd

    svd = lowrank_svd(Factors(f.b.double(), f.a.double(), f.scale))
    return _top(svd.u.cpu(), svd.s.cpu(), svd.vh.cpu())


def factor_difference(now: Factors, before: Factors) -> Factors:
    """now − before as one set of factors of rank ≤ r_now + r_before."""
    b = torch.cat([now.b.double() * now.scale, -before.b.double() * before.scale], dim=1)
    return Factors(b, torch.cat([now.a.double(), before.a.double()], dim=0), 1.0)


@dataclass
class SubspaceTrajectory:
    """Per module: the previous record's accumulated update and each interval's directions."""

    last: dict[str, torch.Tensor | Factors] = field(default_factory=dict)
    directions: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)

    def record(self, step: int, updates: Mapping[str, torch.Tensor | Factors]) -> dict:
        for module, now in updates.items():
            before = self.last.get(module)
            if before is not None and isinstance(now, Factors) != isinstance(before, Factors):
                # One module recorded both ways: compare them as dense matrices.
                now = now.dense() if isinstance(now, Factors) else now
                before = before.dense() if isinstance(before, Factors) else before
            if isinstance(now, Factors):
                increment = now if before is None else factor_difference(now, before)
                out, inp = factor_directions(increment)
                self.last[module] = Factors(now.b.clone(), now.a.clone(), now.scale)
            else:
                now = now.detach().to("cpu", torch.float32)
                out, inp = dense_directions(now if before is None else now - before)
                self.last[module] = now.clone()
            history = self.directions.setdefault(module, [])
            previous = history[-1] if history else None
            history.append((int(step), out, inp))
            for side, new, old in (
                ("out", out, previous[1] if previous else None),
                ("in", inp, previous[2] if previous else None),
            ):
                overlap, angle = (
                    principal_overlap(new, old) if old is not None else (np.nan, np.nan)
                )
                self.rows.append(
                    {
                        "step": int(step),
                        "module": module,
                        "layer": module_layer(module),
                        "kind": module_kind(module),
                        "side": side,
                        "dim": int(new.shape[1]),
                        "overlap_prev": overlap,
                        "angle_prev_max": angle,
                        "overlap_final": np.nan,
                    }
                )
        recent = [r["overlap_prev"] for r in self.rows[-2 * len(updates) :]]
        return {"overlap_prev": float(np.nanmean(recent)) if np.isfinite(recent).any() else None}

    def table(self) -> pd.DataFrame:
        """Every row, with each interval's overlap with the final accumulated update filled in."""
        final = {}
        for module, now in self.last.items():
            final[module] = (
                factor_directions(now) if isinstance(now, Factors) else dense_directions(now)
            )
        frame = pd.DataFrame(self.rows, columns=list(SUBSPACE_COLUMNS))
        for index, row in frame.iterrows():
            _, out, inp = next(
                entry for entry in self.directions[row["module"]] if entry[0] == row["step"]
            )
            new, end = (
                (out, final[row["module"]][0])
                if row["side"] == "out"
                else (
                    inp,
                    final[row["module"]][1],
                )
            )
            frame.at[index, "overlap_final"] = principal_overlap(new, end)[0]
        return frame


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


def subspace_tracker(config: object) -> SubspaceTrajectory | None:
    """A trajectory for a run whose config asks for one (`track_subspaces`, default on)."""
    return SubspaceTrajectory() if getattr(config, "track_subspaces", True) else None


@dataclass
class RankTracker:
    """Collects rank rows over a run and reports each step's means as metric events."""

    ctx: JobContext
    rows: list[dict] = field(default_factory=list)
    subspaces: SubspaceTrajectory | None = field(default_factory=SubspaceTrajectory)

    def record_dense(self, step: int, deltas: Mapping[str, torch.Tensor]) -> dict:
        """Ranks of dense accumulated updates, one per module path."""
        from threadpoolctl import threadpool_limits

        # LAPACK gets the threads torch has (the job runner caps those), never the machine's.
        with threadpool_limits(limits=torch.get_num_threads()):
            rows = [spectrum_row(step, m, dense_singular_values(d)) for m, d in deltas.items()]
            self._record_subspaces(step, deltas)
        return self._log(step, rows)

    def record_factors(self, step: int, factors: Mapping[str, Factors]) -> dict:
        """Ranks of LoRA updates computed exactly from their factors (no dense matrix)."""
        rows = []
        for module, f in factors.items():
            row = spectrum_row(step, module, singular_values(f).detach().cpu().numpy())
            row["norm"] = frobenius(f)
            rows.append(row)
        self._record_subspaces(step, factors)
        return self._log(step, rows)

    def _record_subspaces(self, step: int, updates: Mapping) -> None:
        if self.subspaces is None:
            return
        means = self.subspaces.record(step, updates)
        if means["overlap_prev"] is not None:
            self.ctx.metric("subspace/overlap_prev", means["overlap_prev"], step=step)

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
        if self.subspaces is not None and self.subspaces.rows:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=torch.get_num_threads()):
                table = self.subspaces.table()
            self.ctx.write_table(SUBSPACE_TABLE, table)
            for step, rows in table.groupby("step"):
                self.ctx.metric(
                    "subspace/overlap_final", float(rows["overlap_final"].mean()), step=step
                )

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
