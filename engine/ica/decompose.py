"""PCA then FastICA over [tokens, features] activations: mixing maps, unmixing, per-token sources.

scikit-learn's FastICA whitens with a full SVD (or eigendecomposition) of the whole matrix, which
costs O(features³) and fails past LAPACK's 2³¹−1 element limit (seed 001's "LAPACK error"). We
first project onto the top principal components with a chunked randomized SVD (Halko, Martinsson
& Tropp 2011) that reads the matrix in row blocks — it may be a memmap on disk — and never
builds a centered copy; FastICA then runs on [tokens, pca] scores. benchmarks/ica_decompose.py
compares both paths on planted sources.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from engine.errors import SubnetScopeError
from engine.ica.config import ICAConfig

LAPACK_LIMIT = 2**31 - 1  # elements a single LAPACK call can address (seed 001)
AUTO_PCA_MIN = 200  # automatic PCA keeps max(10 × components, this) dimensions


@dataclass
class ICAResult:
    """X ≈ mean + sources @ mixing.T (per-neuron units when standardized);
    sources = (X − mean) @ unmixing.T − offset for raw activations X."""

    mixing: np.ndarray  # (features, k): how strongly each component drives each neuron
    unmixing: np.ndarray  # (k, features)
    mean: np.ndarray  # (features,)
    offset: np.ndarray  # (k,)
    sources: np.ndarray  # (tokens, k), unit variance, positive skew
    pca_dims: int | None  # None: FastICA ran on the full matrix
    explained_variance: float | None  # share of the variance the PCA step kept
    n_iter: int
    notes: list[str] = field(default_factory=list)

    @property
    def n_components(self) -> int:
        return int(self.mixing.shape[1])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Sources (tokens, k) of new activations (tokens, features)."""
        x = np.asarray(x, dtype=np.float32)
        return (x - self.mean) @ self.unmixing.T - self.offset


def _column_mean(x: np.ndarray, chunk: int) -> np.ndarray:
    total = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], chunk):
        total += x[start : start + chunk].sum(axis=0, dtype=np.float64)
    return (total / x.shape[0]).astype(np.float32)


def column_std(x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Per-feature standard deviation in one chunked pass (float64 sums); 0 becomes 1."""
    total = np.zeros(x.shape[1], dtype=np.float64)
    squares = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], chunk):
        block = np.asarray(x[start : start + chunk], dtype=np.float64)
        total += block.sum(axis=0)
        squares += (block * block).sum(axis=0)
    mean = total / x.shape[0]
    std = np.sqrt(np.maximum(squares / x.shape[0] - mean * mean, 0.0))
    std[std == 0] = 1.0
    return std.astype(np.float32)


def _centered_matmul(x: np.ndarray, mean: np.ndarray, m: np.ndarray, chunk: int) -> np.ndarray:
    """(X − 1·meanᵀ) @ m, one row block at a time."""
    out = np.empty((x.shape[0], m.shape[1]), dtype=np.float32)
    shift = mean @ m  # (cols,)
    for start in range(0, x.shape[0], chunk):
        out[start : start + chunk] = np.asarray(x[start : start + chunk]) @ m - shift
    return out


def _centered_rmatmul(x: np.ndarray, mean: np.ndarray, q: np.ndarray, chunk: int) -> np.ndarray:
    """(X − 1·meanᵀ)ᵀ @ q, one row block at a time."""
    out = np.zeros((x.shape[1], q.shape[1]), dtype=np.float32)
    for start in range(0, x.shape[0], chunk):
        out += np.asarray(x[start : start + chunk]).T @ q[start : start + chunk]
    return out - np.outer(mean, q.sum(axis=0))


def randomized_pca(
    x: np.ndarray,
    n_dims: int,
    *,
    n_iter: int = 4,
    oversample: int = 10,
    seed: int = 0,
    chunk_rows: int = 4096,
    scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Top principal directions of `x` (rows = samples) in float32, reading `x` in row blocks.

    With `scale` (features,), the PCA is of x / scale, without building that matrix. Returns
    (scores (rows, d), components (d, features), mean (features,) of x, kept variance share).
    """
    if scale is not None:
        inv = (1.0 / scale).astype(np.float32)
        scores, components, mean, kept = randomized_pca(
            _Scaled(x, inv),
            n_dims,
            n_iter=n_iter,
            oversample=oversample,
            seed=seed,
            chunk_rows=chunk_rows,
        )
        return scores, components, mean / inv, kept
    rows, cols = x.shape
    n_dims = min(n_dims, rows, cols)
    width = min(n_dims + oversample, rows, cols)
    rng = np.random.default_rng(seed)
    mean = _column_mean(x, chunk_rows)
    omega = rng.standard_normal((cols, width), dtype=np.float32)
    q = _centered_matmul(x, mean, omega, chunk_rows)  # (rows, width)
    for _ in range(n_iter):  # power iterations, re-orthonormalized each half step
        q, _ = linalg.qr(q, mode="economic", overwrite_a=True, check_finite=False)
        z, _ = linalg.qr(
            _centered_rmatmul(x, mean, q, chunk_rows), mode="economic", check_finite=False
        )
        q = _centered_matmul(x, mean, z, chunk_rows)
    q, _ = linalg.qr(q, mode="economic", overwrite_a=True, check_finite=False)
    b = _centered_rmatmul(x, mean, q, chunk_rows).T  # (width, cols) = Qᵀ X_c
    u_b, s, vt = linalg.svd(b, full_matrices=False, lapack_driver="gesdd", check_finite=False)
    scores = (q @ u_b[:, :n_dims]) * s[:n_dims]  # (rows, d)
    total = 0.0
    for start in range(0, rows, chunk_rows):
        block = np.asarray(x[start : start + chunk_rows], dtype=np.float32) - mean
        total += float(np.einsum("ij,ij->", block, block, dtype=np.float64))
    kept = float((s[:n_dims].astype(np.float64) ** 2).sum() / total) if total > 0 else 1.0
    return scores.astype(np.float32), vt[:n_dims].astype(np.float32), mean, kept


class _Scaled:
    """x with every column multiplied by `inv`, read block by block (for memmaps too)."""

    def __init__(self, x: np.ndarray, inv: np.ndarray) -> None:
        self.x, self.inv, self.shape = x, inv, x.shape

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.asarray(self.x[rows], dtype=np.float32) * self.inv


def _pca_dims(config: ICAConfig, rows: int, cols: int) -> tuple[int | None, list[str]]:
    too_big = rows * cols > LAPACK_LIMIT or rows * cols * 8 > config.memory_budget
    auto = min(max(10 * config.n_components, AUTO_PCA_MIN), rows, cols)
    if config.pca == "auto":
        return (auto if cols > auto else None), []
    try:
        dims = int(config.pca)
    except (TypeError, ValueError):
        raise SubnetScopeError(f"pca must be 'auto' or a number, not {config.pca!r}") from None
    if dims == 0:
        if too_big:
            note = (
                f"the matrix [{rows} × {cols}] passes the LAPACK limit or the memory budget, "
                f"so PCA to {auto} dimensions ran first (seed 001's rule)"
            )
            return auto, [note]
        return None, []
    if dims < config.n_components:
        raise SubnetScopeError(
            f"pca keeps {dims} dimensions, fewer than the {config.n_components} components asked"
        )
    return min(dims, rows, cols), []


def _orient(mixing: np.ndarray, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order components by the variance they explain, and flip each to positive source skew, so
    that a component's "top tokens" are those where it fires."""
    energy = (mixing.astype(np.float64) ** 2).sum(axis=0) * sources.var(axis=0)
    order = np.argsort(-energy, kind="stable")
    centered = sources - sources.mean(axis=0)
    skew = (centered.astype(np.float64) ** 3).mean(axis=0)
    signs = np.where(skew < 0, -1.0, 1.0).astype(np.float32)
    return order, signs


def run_ica(x: np.ndarray, config: ICAConfig | None = None) -> ICAResult:
    """PCA (when wide or over the limits) then scikit-learn's FastICA; float32 throughout."""
    from sklearn.decomposition import FastICA

    config = config or ICAConfig()
    rows, cols = x.shape
    k = int(config.n_components)
    if k < 1:
        raise SubnetScopeError(f"n_components must be ≥ 1, not {k}")
    if k > min(rows, cols):
        raise SubnetScopeError(
            f"cannot find {k} components in [{rows} tokens × {cols} neurons]: need at most "
            f"{min(rows, cols)}; capture more text or ask for fewer components"
        )
    dims, notes = _pca_dims(config, rows, cols)
    ica = FastICA(
        n_components=k,
        whiten="unit-variance",
        whiten_solver="svd",
        max_iter=config.max_iter,
        tol=config.tol,
        random_state=config.seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scale = column_std(x) if config.standardize else None
        if dims is not None:
            scores, components, mean, kept = randomized_pca(x, dims, seed=config.seed, scale=scale)
            sources = ica.fit_transform(scores).astype(np.float32)
            mixing = components.T @ ica.mixing_.astype(np.float32)  # (features, k)
            unmixing = ica.components_.astype(np.float32) @ components  # (k, features)
            offset = (ica.mean_ @ ica.components_.T).astype(np.float32)
        else:
            data = np.asarray(x, dtype=np.float32)
            sources = ica.fit_transform(data if scale is None else data / scale)
            sources = sources.astype(np.float32)
            mixing = ica.mixing_.astype(np.float32)
            unmixing = ica.components_.astype(np.float32)
            mean = ica.mean_.astype(np.float32) * (1 if scale is None else scale)
            offset = np.zeros(k, dtype=np.float32)
            kept = None
        if scale is not None:  # mixing stays in standardized units; transform() takes raw x
            unmixing = unmixing / scale
    for warning in caught:
        if "did not converge" in str(warning.message):
            notes.append(
                f"FastICA did not converge in {config.max_iter} iterations; raise max_iter or tol"
            )
    order, signs = _orient(mixing, sources)
    sources = sources[:, order] * signs[order]
    # transform() must reproduce the oriented sources: flip and reorder every part of it.
    return ICAResult(
        mixing=np.ascontiguousarray(mixing[:, order] * signs[order]),
        unmixing=np.ascontiguousarray(unmixing[order] * signs[order, None]),
        mean=mean,
        offset=(offset[order] * signs[order]).astype(np.float32),
        sources=np.ascontiguousarray(sources),
        pca_dims=dims,
        explained_variance=kept,
        n_iter=int(ica.n_iter_),
        notes=notes,
    )
