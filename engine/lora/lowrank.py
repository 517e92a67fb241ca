"""Exact low-rank algebra of LoRA updates: weighted blends, factored SVD, norms and spectra."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.errors import SubnetScopeError

# Singular values below this fraction of the largest are numerical noise of a rank-deficient
# product (float64 QR + SVD leave ~1e-16 relative residue) and are dropped.
RELATIVE_TOLERANCE = 1e-7


@dataclass(frozen=True)
class Factors:
    """One module's LoRA update ΔW = scale · B @ A."""

    b: torch.Tensor  # (d_out, r)
    a: torch.Tensor  # (r, d_in)
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.b.ndim != 2 or self.a.ndim != 2:
            raise SubnetScopeError(
                f"LoRA factors must be matrices, got B with shape {tuple(self.b.shape)} "
                f"and A with shape {tuple(self.a.shape)}."
            )
        if self.b.shape[1] != self.a.shape[0]:
            raise SubnetScopeError(
                f"LoRA factor ranks disagree: B {tuple(self.b.shape)} has rank {self.b.shape[1]} "
                f"but A {tuple(self.a.shape)} has rank {self.a.shape[0]}."
            )
        if not math.isfinite(self.scale):
            raise SubnetScopeError(f"LoRA scale must be finite, got {self.scale}.")

    @property
    def rank(self) -> int:
        return self.b.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        """(d_out, d_in) of the update."""
        return self.b.shape[0], self.a.shape[1]

    def dense(self) -> torch.Tensor:
        """The update as a (d_out, d_in) matrix; for tests and small modules only."""
        return self.scale * (self.b @ self.a)


@dataclass(frozen=True)
class LowRankSVD:
    """Thin SVD of a low-rank update: ΔW = u @ diag(s) @ vh."""

    u: torch.Tensor  # (d_out, k) orthonormal columns
    s: torch.Tensor  # (k,) descending, positive
    vh: torch.Tensor  # (k, d_in) orthonormal rows


@dataclass(frozen=True)
class Blend:
    """A blended update and how far it is from the exact weighted sum of its inputs.

    For SVD blends the factors are B = U·diag(s), A = Vh, scale 1 — the split PEFT's ``svd``
    combination uses (singular values folded into B, orthonormal rows in A).
    """

    factors: Factors  # B (d_out, k), A (k, d_in), scale 1
    error: float  # ‖result − exact‖_F / ‖exact‖_F
    truncation: float  # sqrt(Σ dropped s²) / ‖exact‖_F
    rank: int


def lora_scale(alpha: float, r: int, use_rslora: bool = False) -> float:
    """PEFT's scaling of B @ A: alpha / r, or alpha / sqrt(r) with rank-stabilized LoRA."""
    if r < 1:
        raise SubnetScopeError(f"LoRA rank must be at least 1, got {r}.")
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def _check_blend_inputs(factors: Sequence[Factors], weights: Sequence[float]) -> None:
    if not factors:
        raise SubnetScopeError("A LoRA blend needs at least one adapter.")
    if len(weights) != len(factors):
        raise SubnetScopeError(
            f"A LoRA blend got {len(weights)} weights for {len(factors)} adapters."
        )
    shape = factors[0].shape
    for i, f in enumerate(factors):
        if f.shape != shape:
            raise SubnetScopeError(
                f"Adapter {i} updates a {f.shape[0]}×{f.shape[1]} weight but adapter 0 updates "
                f"a {shape[0]}×{shape[1]} weight."
            )
    for i, w in enumerate(weights):
        if not math.isfinite(float(w)):
            raise SubnetScopeError(f"Blend weight {i} must be finite, got {w}.")


def _dtype(factors: Sequence[Factors]) -> torch.dtype:
    """The inputs' widest dtype, at least float32: bf16 / fp16 adapters blend in float32."""
    dtype = torch.promote_types(factors[0].b.dtype, torch.float32)
    for f in factors:
        dtype = torch.promote_types(torch.promote_types(dtype, f.b.dtype), f.a.dtype)
    return dtype


def stacked(factors: Sequence[Factors], weights: Sequence[float]) -> Factors:
    """The exact weighted sum Σ wᵢ sᵢ Bᵢ Aᵢ as one factor pair of rank Σ rᵢ (PEFT's ``cat``)."""
    _check_blend_inputs(factors, weights)
    dtype, device = _dtype(factors), factors[0].b.device
    b = torch.cat(
        [
            (float(w) * f.scale) * f.b.to(device, dtype)
            for f, w in zip(factors, weights, strict=True)
        ],
        dim=1,
    )  # (d_out, Σr)
    a = torch.cat([f.a.to(device, dtype) for f in factors], dim=0)  # (Σr, d_in)
    return Factors(b, a, 1.0)


def _qr_core(f: Factors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ΔW = q_b @ core @ q_aᵀ in float64, with q_b, q_a orthonormal columns."""
    q_b, r_b = torch.linalg.qr(f.b.double())  # (d_out, p), (p, r)
    q_a, r_a = torch.linalg.qr(f.a.double().T)  # (d_in, q), (q, r)
    core = f.scale * (r_b @ r_a.T)  # (p, q), p, q ≤ r
    return q_b, core, q_a


def lowrank_svd(f: Factors) -> LowRankSVD:
    """Exact thin SVD of scale·B@A in O(d·r²), without forming the d_out×d_in matrix.

    Computed in float64 and returned in the factors' dtype; singular values below 1e-7 of the
    largest are dropped, so k is the numerical rank (≤ r).
    """
    dtype = torch.promote_types(f.b.dtype, f.a.dtype)
    q_b, core, q_a = _qr_core(f)
    u_c, s, vh_c = torch.linalg.svd(core, full_matrices=False)  # (p, m), (m,), (m, q)
    k = int((s > RELATIVE_TOLERANCE * s[0]).sum()) if s.numel() and s[0] > 0 else 0
    u = q_b @ u_c[:, :k]  # (d_out, k)
    vh = vh_c[:k] @ q_a.T  # (k, d_in)
    return LowRankSVD(u.to(dtype), s[:k].to(dtype), vh.to(dtype))


def singular_values(f: Factors) -> torch.Tensor:
    """The nonzero singular values of scale·B@A, descending: (k,)."""
    return lowrank_svd(f).s


def frobenius(f: Factors) -> float:
    """‖scale·B@A‖_F from the r×r Gram matrices: sqrt(trace((BᵀB)(AAᵀ)))·|scale|."""
    b, a = f.b.double(), f.a.double()
    # trace(XY) of symmetric X, Y is the sum of their elementwise product.
    squared = float(((b.T @ b) * (a @ a.T)).sum())
    return math.sqrt(max(squared, 0.0)) * abs(f.scale)


def difference_norm(x: Factors, y: Factors) -> float:
    """‖ΔW_x − ΔW_y‖_F without dense matrices.

    Uses the QR core of [x, −y] rather than Gram matrices: the Gram form subtracts near-equal
    squares and cannot resolve differences below ~1e-8 of the norms.
    """
    _, core, _ = _qr_core(stacked([x, y], [1.0, -1.0]))
    return float(torch.linalg.matrix_norm(core))


def cosine(x: Factors, y: Factors) -> float:
    """<ΔW_x, ΔW_y>_F / (‖ΔW_x‖_F ‖ΔW_y‖_F) from the factors."""
    _check_blend_inputs([x, y], [1.0, 1.0])
    norm_x, norm_y = frobenius(x), frobenius(y)
    if norm_x == 0 or norm_y == 0:
        raise SubnetScopeError("The cosine of a zero LoRA update is undefined.")
    b_x, a_x, b_y, a_y = (t.double() for t in (x.b, x.a, y.b, y.a))
    # trace((B_xᵀB_y)(A_y A_xᵀ)) = Σ (B_xᵀB_y) ⊙ (A_x A_yᵀ)
    inner = float(((b_x.T @ b_y) * (a_x @ a_y.T)).sum()) * x.scale * y.scale
    return inner / (norm_x * norm_y)


def _spectrum(sv: torch.Tensor | Sequence[float]) -> torch.Tensor:
    s = torch.as_tensor(sv, dtype=torch.float64).flatten()
    if bool((s < 0).any()) or not bool(torch.isfinite(s).all()):
        raise SubnetScopeError("Singular values must be finite and non-negative.")
    return s


def effective_rank(sv: torch.Tensor | Sequence[float]) -> float:
    """Roy & Vetterli (2007): exp of the entropy of p = s / Σs; 0 for a zero spectrum."""
    s = _spectrum(sv)
    total = float(s.sum())
    if total == 0:
        return 0.0
    p = s[s > 0] / total
    return math.exp(float(-(p * p.log()).sum()))


def stable_rank(sv: torch.Tensor | Sequence[float]) -> float:
    """Σ s² / s_max²; 0 for a zero spectrum."""
    s = _spectrum(sv)
    if s.numel() == 0 or float(s.max()) == 0:
        return 0.0
    return float((s**2).sum() / s.max() ** 2)


def _relative(diff: float, norm: float) -> float:
    return diff / norm if norm > 0 else 0.0


def cat_blend(factors: Sequence[Factors], weights: Sequence[float]) -> Blend:
    """PEFT's ``cat``: the exact weighted sum at rank Σ rᵢ.

    The result *is* the exact update's factorization (`stacked`), so its error is 0 by
    construction; measuring it against a second identical stacking could never fail. The tests
    check `stacked` against the dense Σ wᵢ sᵢ Bᵢ Aᵢ instead.
    """
    result = stacked(factors, weights)
    return Blend(result, 0.0, 0.0, result.rank)


def svd_blend(
    factors: Sequence[Factors], weights: Sequence[float], rank: int | None = None
) -> Blend:
    """PEFT's ``svd`` done exactly: the best rank-``rank`` approximation of Σ wᵢ sᵢ Bᵢ Aᵢ.

    ``rank`` defaults to the largest input rank, as in PEFT. Never forms a d_out×d_in matrix.
    """
    exact = stacked(factors, weights)
    if rank is None:
        rank = max(f.rank for f in factors)
    if rank < 1:
        raise SubnetScopeError(f"The blend rank must be at least 1, got {rank}.")
    svd = lowrank_svd(exact)
    k = min(rank, svd.s.numel())
    result = Factors(svd.u[:, :k] * svd.s[:k], svd.vh[:k], 1.0)  # (d_out, k), (k, d_in)
    exact_norm = frobenius(exact)
    dropped = float((svd.s[k:].double() ** 2).sum())
    return Blend(
        result,
        _relative(difference_norm(result, exact), exact_norm),
        _relative(math.sqrt(dropped), exact_norm),
        k,
    )
