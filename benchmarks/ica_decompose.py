"""ICA on a wide activation matrix: our path (chunked randomized PCA to a few hundred
dimensions, then FastICA) against scikit-learn's FastICA on the full matrix, on planted sources.

Planted data: k independent non-Gaussian sources (Laplace, uniform, centered exponential,
Student-t), standardized, mixed by a random Gaussian [features × k] matrix, plus Gaussian noise
(std 0.5), float32. Both paths must recover the sources: each found source is matched to a
planted one by the Hungarian algorithm on |corr|, and the min and mean matched |corr| are
reported. Size: `SUBNETSCOPE_BENCH_ICA_SIZE` as TOKENSxFEATURESxCOMPONENTS (default
8192x4096x20; 2048x1024x10 runs in seconds).
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment

from benchmarks.runner import Result, benchmark, compare, spread

SIZE_ENV = "SUBNETSCOPE_BENCH_ICA_SIZE"
DEFAULT_SIZE = "8192x4096x20"
NOISE = 0.5
SEED = 0
MAX_ITER = 400
TOL = 1e-4


def parse_size(text: str) -> tuple[int, int, int]:
    """TOKENSxFEATURESxCOMPONENTS, e.g. 8192x4096x20."""
    try:
        tokens, features, k = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{SIZE_ENV} must be TOKENSxFEATURESxCOMPONENTS, not {text!r}") from None
    if min(tokens, features, k) < 1 or k > min(tokens, features):
        raise ValueError(f"{SIZE_ENV}={text!r}: need 1 ≤ components ≤ min(tokens, features)")
    return tokens, features, k


def planted(tokens: int, features: int, k: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(x (tokens, features) float32, sources (tokens, k) standardized)."""
    rng = np.random.default_rng(seed)
    makers = [
        lambda n: rng.laplace(size=n),
        lambda n: rng.uniform(-1, 1, size=n),
        lambda n: rng.exponential(size=n) - 1,
        lambda n: rng.standard_t(5, size=n),
    ]
    s = np.stack([makers[i % len(makers)](tokens) for i in range(k)], axis=1)
    s = ((s - s.mean(0)) / s.std(0)).astype(np.float32)
    mixing = rng.standard_normal((features, k), dtype=np.float32)
    x = s @ mixing.T
    x += np.float32(NOISE) * rng.standard_normal((tokens, features), dtype=np.float32)
    return x, s


def matched_correlations(true: np.ndarray, found: np.ndarray) -> np.ndarray:
    """|corr| of each planted source with the found source the Hungarian algorithm pairs it to."""
    k = true.shape[1]
    corr = np.abs(np.corrcoef(true.T, found.T)[:k, k:])
    rows, cols = linear_sum_assignment(-corr)
    return corr[rows, cols]


def run_ours(x: np.ndarray, k: int) -> tuple[float, dict]:
    from engine.ica import ICAConfig, run_ica

    started = time.perf_counter()
    # unstandardized, to compute what the sklearn baseline computes (the product z-scores first)
    config = ICAConfig(n_components=k, max_iter=MAX_ITER, tol=TOL, seed=SEED, standardize=False)
    result = run_ica(x, config)
    seconds = time.perf_counter() - started
    return seconds, {
        "sources": result.sources,
        "pca_dims": result.pca_dims,
        "explained_variance": result.explained_variance,
        "n_iter": result.n_iter,
        "notes": result.notes,
    }


def run_sklearn(x: np.ndarray, k: int) -> tuple[float, dict]:
    """scikit-learn's own FastICA on the full matrix (whitening by SVD of all of it)."""
    from sklearn.decomposition import FastICA

    ica = FastICA(
        n_components=k,
        whiten="unit-variance",
        whiten_solver="svd",
        max_iter=MAX_ITER,
        tol=TOL,
        random_state=SEED,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        sources = ica.fit_transform(x)
        seconds = time.perf_counter() - started
    converged = not any("did not converge" in str(w.message) for w in caught)
    return seconds, {"sources": sources, "n_iter": int(ica.n_iter_), "converged": converged}


def _recovery(true: np.ndarray, found: np.ndarray) -> dict[str, float]:
    corr = matched_correlations(true, found)
    return {"min": round(float(corr.min()), 4), "mean": round(float(corr.mean()), 4)}


@benchmark("ica_decompose", repeats=1)
def ica_decompose(repeats: int) -> list[Result]:
    """Seconds of run_ica (randomized PCA + FastICA) against sklearn FastICA on the full matrix,
    and how well each recovers the planted sources (min matched |corr|)."""
    size = os.environ.get(SIZE_ENV, DEFAULT_SIZE)
    tokens, features, k = parse_size(size)
    started = time.perf_counter()
    x, s = planted(tokens, features, k)
    generate_seconds = time.perf_counter() - started
    ours: list[tuple[float, dict]] = []
    theirs: list[tuple[float, dict]] = []
    for i in range(repeats):
        # Alternating, each round starting with the other, so both see the same load.
        if i % 2 == 0:
            ours.append(run_ours(x, k))
            theirs.append(run_sklearn(x, k))
        else:
            theirs.append(run_sklearn(x, k))
            ours.append(run_ours(x, k))
    our_seconds = [t for t, _ in ours]
    their_seconds = [t for t, _ in theirs]
    our_fit, their_fit = ours[-1][1], theirs[-1][1]
    ours_corr = [_recovery(s, fit["sources"]) for _, fit in ours]
    theirs_corr = [_recovery(s, fit["sources"]) for _, fit in theirs]
    speedup = float(np.median(their_seconds) / np.median(our_seconds))
    shared = {
        "shape": [tokens, features],
        "components": k,
        "noise_std": NOISE,
        "dtype": "float32",
        "generate_seconds": round(generate_seconds, 2),
        "speedup_baseline_over_ours": round(speedup, 2),
        "pca_dims": our_fit["pca_dims"],
        "explained_variance": (
            None
            if our_fit["explained_variance"] is None
            else round(our_fit["explained_variance"], 4)
        ),
        "ours_n_iter": our_fit["n_iter"],
        "ours_notes": our_fit["notes"],
        "sklearn_n_iter": their_fit["n_iter"],
        "sklearn_converged": their_fit["converged"],
        "ours_matched_corr": ours_corr[-1],
        "sklearn_matched_corr": theirs_corr[-1],
        "size_env": f"{SIZE_ENV}={size}",
    }
    return [
        compare(
            "ica_decompose.seconds",
            f"seconds of run_ica (randomized PCA to {our_fit['pca_dims']} dims + FastICA, "
            f"{k} components) (median)",
            our_seconds,
            "sklearn FastICA on the full matrix (whiten_solver=svd)",
            their_seconds,
            details=shared,
        ),
        compare(
            "ica_decompose.min_matched_corr",
            "min |corr| of planted to found sources, Hungarian-matched, run_ica (median)",
            [c["min"] for c in ours_corr],
            "the same for sklearn FastICA on the full matrix",
            [c["min"] for c in theirs_corr],
            unit="|corr|",
            details=shared
            | {
                "ours_mean": spread([c["mean"] for c in ours_corr]),
                "sklearn_mean": spread([c["mean"] for c in theirs_corr]),
            },
        ),
    ]
