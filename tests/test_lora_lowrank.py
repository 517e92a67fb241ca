"""Exact low-rank LoRA algebra against dense references: SVD, blends, norms, cosine, spectra."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.lora import (
    Factors,
    cat_blend,
    cosine,
    difference_norm,
    effective_rank,
    frobenius,
    lora_scale,
    lowrank_svd,
    singular_values,
    stable_rank,
    stacked,
    svd_blend,
)

RANKS = (4, 8, 16)
WEIGHTS = (0.7, -0.4, 1.3)
SHAPES = [(192, 96), (64, 256)]
DTYPES = [torch.float32, torch.float64]
SV_TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def adapters(shape: tuple[int, int], dtype: torch.dtype, seed: int = 0) -> list[Factors]:
    d_out, d_in = shape
    gen = torch.Generator().manual_seed(seed)
    out = []
    for r in RANKS:
        b = torch.randn(d_out, r, generator=gen, dtype=torch.float64)
        a = torch.randn(r, d_in, generator=gen, dtype=torch.float64) / math.sqrt(d_in)
        out.append(Factors(b.to(dtype), a.to(dtype), lora_scale(2 * r, r)))
    return out


def dense(f: Factors) -> torch.Tensor:
    return f.scale * (f.b.double() @ f.a.double())  # (d_out, d_in)


def exact_delta(factors: list[Factors], weights=WEIGHTS) -> torch.Tensor:
    return sum(w * dense(f) for f, w in zip(factors, weights, strict=True))


def projector(u: torch.Tensor) -> torch.Tensor:
    u = u.double()
    return u @ u.T


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lowrank_svd_matches_dense(shape, dtype):
    f = stacked(adapters(shape, dtype), WEIGHTS)
    ours = lowrank_svd(f)
    assert ours.u.dtype == ours.s.dtype == ours.vh.dtype == dtype
    k = ours.s.numel()
    assert k == sum(RANKS)
    u, s, vh = torch.linalg.svd(exact_delta(adapters(shape, dtype)), full_matrices=False)
    assert torch.all(s[: k - 1] - s[1:k] > 1e-6 * s[0])  # distinct: subspaces well defined
    assert float((ours.s.double() - s[:k]).abs().max() / s[0]) <= SV_TOL[dtype]
    assert torch.all(ours.s[:-1] >= ours.s[1:])
    assert float(torch.linalg.matrix_norm(projector(ours.u) - projector(u[:, :k]))) <= 1e-4
    assert float(torch.linalg.matrix_norm(projector(ours.vh.T) - projector(vh[:k].T))) <= 1e-4
    eye = torch.eye(k, dtype=torch.float64)
    assert torch.allclose(ours.u.double().T @ ours.u.double(), eye, atol=1e-5)
    assert torch.allclose(singular_values(f), ours.s)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rank", [1, 6, 16])
def test_svd_blend_is_eckart_young(shape, dtype, rank):
    factors = adapters(shape, dtype)
    blend = svd_blend(factors, WEIGHTS, rank=rank)
    assert blend.rank == rank
    assert blend.factors.b.shape == (shape[0], rank) and blend.factors.a.shape == (rank, shape[1])
    assert blend.factors.b.dtype == dtype and blend.factors.scale == 1.0

    exact = exact_delta(factors)
    u, s, vh = torch.linalg.svd(exact, full_matrices=False)
    assert s[rank - 1] - s[rank] > 5e-3 * s[0]  # a spectral gap makes the truncation unique
    best = u[:, :rank] @ torch.diag(s[:rank]) @ vh[:rank]
    ours = dense(blend.factors)
    assert float(torch.linalg.matrix_norm(ours - best) / torch.linalg.matrix_norm(best)) <= 1e-4

    norm = float(torch.linalg.matrix_norm(exact))
    dense_error = float(torch.linalg.matrix_norm(ours - exact)) / norm
    dropped = math.sqrt(float((s[rank:] ** 2).sum())) / norm
    assert blend.error == pytest.approx(dense_error, rel=1e-4)
    assert blend.truncation == pytest.approx(dropped, rel=1e-4)
    assert blend.error == pytest.approx(blend.truncation, rel=1e-4)


def test_svd_blend_default_rank_is_largest_input_rank():
    blend = svd_blend(adapters((96, 80), torch.float64), WEIGHTS)
    assert blend.rank == max(RANKS)


def test_svd_blend_without_truncation_is_exact():
    factors = adapters((96, 80), torch.float64)
    blend = svd_blend(factors, WEIGHTS, rank=sum(RANKS) + 5)
    assert blend.rank == sum(RANKS)
    assert blend.error < 1e-10 and blend.truncation == 0.0
    assert torch.allclose(dense(blend.factors), exact_delta(factors), atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cat_blend_is_exact(shape, dtype):
    factors = adapters(shape, dtype)
    blend = cat_blend(factors, WEIGHTS)
    assert blend.rank == sum(RANKS) and blend.truncation == 0.0
    exact = exact_delta(factors)
    relative = torch.linalg.matrix_norm(dense(blend.factors) - exact) / torch.linalg.matrix_norm(
        exact
    )
    assert float(relative) <= 1e-6
    assert blend.error <= 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_norms_and_cosine_match_dense(dtype):
    x, y, z = adapters((128, 72), dtype, seed=3)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for f in (x, y, z):
        assert frobenius(f) == pytest.approx(float(torch.linalg.matrix_norm(dense(f))), rel=tol)
    assert difference_norm(x, y) == pytest.approx(
        float(torch.linalg.matrix_norm(dense(x) - dense(y))), rel=tol
    )
    assert difference_norm(x, x) <= 1e-6 * frobenius(x)
    dense_cos = float((dense(x) * dense(z)).sum()) / (
        float(torch.linalg.matrix_norm(dense(x))) * float(torch.linalg.matrix_norm(dense(z)))
    )
    assert cosine(x, z) == pytest.approx(dense_cos, abs=tol)
    assert cosine(x, x) == pytest.approx(1.0, abs=tol)
    negated = Factors(x.b, x.a, -x.scale)
    assert cosine(x, negated) == pytest.approx(-1.0, abs=tol)


def test_spectral_ranks():
    assert effective_rank(torch.ones(7)) == pytest.approx(7.0)
    assert effective_rank([3.0, 3.0, 3.0, 0.0]) == pytest.approx(3.0)
    assert effective_rank(torch.zeros(3)) == 0.0
    gen = torch.Generator().manual_seed(1)
    rank_one = Factors(torch.randn(50, 1, generator=gen), torch.randn(1, 40, generator=gen), 2.0)
    assert stable_rank(singular_values(rank_one)) == pytest.approx(1.0)
    assert stable_rank([2.0, 2.0]) == pytest.approx(2.0)
    assert 1.0 < effective_rank([5.0, 1.0]) < 2.0


def test_lora_scale():
    assert lora_scale(16, 8) == 2.0
    assert lora_scale(16, 4, use_rslora=True) == 8.0


def test_validation_errors():
    a, b, c = adapters((32, 24), torch.float64)
    other = Factors(torch.randn(32, 4), torch.randn(4, 25))
    with pytest.raises(SubnetScopeError, match="adapter 0 updates a 32×24"):
        svd_blend([a, other], [1.0, 1.0])
    with pytest.raises(SubnetScopeError, match="2 weights for 3 adapters"):
        cat_blend([a, b, c], [1.0, 1.0])
    with pytest.raises(SubnetScopeError, match="at least 1"):
        svd_blend([a, b], [1.0, 1.0], rank=0)
    with pytest.raises(SubnetScopeError, match="at least one adapter"):
        stacked([], [])
    with pytest.raises(SubnetScopeError, match="ranks disagree"):
        Factors(torch.randn(8, 3), torch.randn(4, 8))
    with pytest.raises(SubnetScopeError, match="at least 1"):
        lora_scale(8, 0)
    with pytest.raises(SubnetScopeError, match="zero LoRA update"):
        cosine(a, Factors(a.b, a.a, 0.0))
    with pytest.raises(SubnetScopeError, match="non-negative"):
        effective_rank([1.0, -1.0])
