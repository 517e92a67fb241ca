"""Ranks of an update ΔW from its full singular spectrum: classical, effective and stable rank.

Effective rank: exp of the Shannon entropy of σ/Σσ (Roy & Vetterli 2007); stable rank:
‖ΔW‖_F² / ‖ΔW‖₂² (Rudelson & Vershynin 2007) — the three of seed 000's utils. The spectrum is
always complete (LAPACK gesdd in float32 through scipy, which beats numpy's float64-only SVD);
a matrix over the memory budget is reported as skipped, never as a truncated spectrum.

The stable rank here is exact. Seed 000's `get_stable_rank` divides by σ_max² + 1e-10, which
multiplies the rank by σ_max² / (σ_max² + 1e-10): nothing for large updates, but a small one
reads as low-rank. One 576×576 Gaussian ΔW scaled to σ_max = 1e-2 / 1e-4 / 1e-5 / 1e-6 has
stable rank 147.15 at every scale here; the seed's formula gives 147.15 / 145.69 / 73.58 / 1.46
(halved at σ_max = 1e-5: early checkpoints, small fp32 updates). Multiply by that factor to get
the seed's number. Effective and classical rank agree with the seed's to 1e-3 and exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class RankStats:
    """The ranks of one update. `method`: 'svd' (full spectrum), 'zero' (ΔW == 0 exactly) or
    'skipped' (then `reason` says why)."""

    method: str
    rank: int | None = None
    rank_tol: float | None = None  # singular values above this count
    effective_rank: float | None = None
    stable_rank: float | None = None
    sigma_max: float | None = None
    reason: str | None = None


def singular_values(delta: np.ndarray) -> np.ndarray:
    """All singular values, descending, in float32 (the input buffer is overwritten)."""
    from scipy.linalg import svdvals

    a = np.asarray(delta, dtype=np.float32)
    # A C-ordered matrix's transpose is Fortran-ordered: LAPACK takes it without a copy, and
    # the spectrum of Aᵀ is that of A.
    return svdvals(a.T, overwrite_a=True, check_finite=False)


def ranks_from_spectrum(
    sigma: np.ndarray, shape: tuple[int, int], rtol: float | None = None
) -> RankStats:
    """Ranks from a full spectrum. rtol None: numpy.linalg.matrix_rank's max(m, n)·eps·σ_max."""
    s = np.sort(np.asarray(sigma, dtype=np.float64))[::-1]
    smax = float(s[0]) if s.size else 0.0
    rel = rtol if rtol is not None else max(shape) * EPS32
    tol = rel * smax
    if smax == 0.0 or not math.isfinite(smax):
        # A zero update has rank 0; its entropy-based rank is defined as 0 too.
        zero = smax == 0.0
        return RankStats(
            "svd", 0 if zero else None, tol, 0.0 if zero else None, 0.0 if zero else None, smax
        )
    p = s / s.sum()
    p = p[p > 0]
    entropy = float(-(p * np.log(p)).sum())
    return RankStats(
        method="svd",
        rank=int((s > tol).sum()),
        rank_tol=tol,
        effective_rank=math.exp(entropy),
        stable_rank=float((s**2).sum() / smax**2),  # Σσ² = ‖ΔW‖_F²
        sigma_max=smax,
    )


def rank_bytes(shape: tuple[int, int]) -> int:
    """Memory of the dense float32 ΔW plus LAPACK's workspace for singular values only."""
    m, n = shape
    k = min(m, n)
    return 4 * (m * n + 4 * k * k + 8 * max(m, n))


ZERO_UPDATE = RankStats("zero", 0, 0.0, 0.0, 0.0, 0.0)  # ΔW == 0 exactly: no SVD needed


def skipped(reason: str) -> RankStats:
    return RankStats("skipped", reason=reason)


def update_ranks(delta: np.ndarray, rtol: float | None = None) -> RankStats:
    """The three ranks of a 2-D update (overwrites `delta`)."""
    if delta.ndim != 2:
        return skipped(f"not a matrix ({delta.ndim}-D)")
    if not np.isfinite(delta).all():
        return skipped("the update has NaN or infinite values")
    shape = (int(delta.shape[0]), int(delta.shape[1]))
    return ranks_from_spectrum(singular_values(delta), shape, rtol)
