"""ICA numerics against planted ground truth: sources, mixing maps and key neurons recovered."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from engine.errors import SubnetScopeError
from engine.ica import ICAConfig, key_features, randomized_pca, run_ica, templates_from_mixing

WIDTHS = (200, 200, 200)  # three "layers" of 200 neurons
KEY = 30  # planted key neurons per component (5 % of 600)


def planted(tokens: int = 3000, k: int = 5, seed: int = 0):
    """Independent non-Gaussian sources; each drives its own 30 neurons strongly, others weakly."""
    rng = np.random.default_rng(seed)
    makers = [
        lambda n: rng.laplace(size=n),
        lambda n: rng.exponential(size=n) - 1,
        lambda n: rng.uniform(-1, 1, size=n),
        lambda n: rng.standard_t(5, size=n),
        lambda n: (rng.random(n) < 0.1).astype(float) * rng.exponential(3, size=n),
    ]
    s = np.stack([makers[i % len(makers)](tokens) for i in range(k)], axis=1)
    s = ((s - s.mean(0)) / s.std(0)).astype(np.float32)
    features = sum(WIDTHS)
    a = rng.normal(0, 0.1, size=(features, k)).astype(np.float32)
    keys = rng.permutation(features)[: k * KEY].reshape(k, KEY)
    for c in range(k):
        a[keys[c], c] = rng.choice([-1, 1], size=KEY) * rng.uniform(3, 5, size=KEY)
    x = s @ a.T + 0.3 * rng.standard_normal((tokens, features)).astype(np.float32)
    return x.astype(np.float32), s, a, keys


def matched_correlations(true: np.ndarray, found: np.ndarray) -> np.ndarray:
    k = true.shape[1]
    corr = np.abs(np.corrcoef(true.T, found.T)[:k, k:])
    rows, cols = linear_sum_assignment(-corr)
    return corr[rows, cols]


@pytest.mark.parametrize("pca", ["auto", 0, 50])
def test_planted_sources_are_recovered(pca):
    x, s, _, _ = planted()
    result = run_ica(x, ICAConfig(n_components=5, pca=pca))
    assert matched_correlations(s, result.sources).min() >= 0.95
    assert result.sources.dtype == np.float32 and result.mixing.dtype == np.float32
    assert result.pca_dims == (None if pca == 0 else (200 if pca == "auto" else 50))
    # transform() reproduces the sources it was fitted on
    np.testing.assert_allclose(result.transform(x), result.sources, atol=1e-3)


def test_planted_key_neurons_are_found_exactly():
    x, s, _, keys = planted()
    result = run_ica(x, ICAConfig(n_components=5))
    corr = np.abs(np.corrcoef(s.T, result.sources.T)[:5, 5:])
    templates = templates_from_mixing(result.mixing, [0, 1, 2], WIDTHS, percentile=95.0)
    offsets = np.cumsum((0, *WIDTHS))
    for planted_c in range(5):
        found_c = int(corr[planted_c].argmax())
        flat = {offsets[layer] + n for layer, n in templates.neurons(found_c)}
        assert flat == set(keys[planted_c].tolist())


def test_components_are_ordered_and_positively_skewed():
    x, _, _, _ = planted()
    result = run_ica(x, ICAConfig(n_components=5))
    energy = (result.mixing.astype(np.float64) ** 2).sum(0) * result.sources.var(0)
    assert np.all(np.diff(energy) <= 1e-6 * energy.max())
    centered = result.sources - result.sources.mean(0)
    assert np.all((centered**3).mean(0) >= 0)


def test_randomized_pca_matches_exact_pca_in_float32():
    # A decaying spectrum (as activations have): the sketch must match LAPACK's SVD.
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.standard_normal((1500, 300)))
    v, _ = np.linalg.qr(rng.standard_normal((600, 300)))
    x = ((u * (100 * 0.9 ** np.arange(300))) @ v.T + 3.0).astype(np.float32)
    scores, components, mean, kept = randomized_pca(x, 20, chunk_rows=256)
    _, sv, vt = np.linalg.svd((x - x.mean(0)).astype(np.float64), full_matrices=False)
    assert scores.dtype == components.dtype == mean.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(scores, axis=0), sv[:20], rtol=1e-4)
    overlap = np.abs(np.sum(components.astype(np.float64) * vt[:20], axis=1))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-3)
    assert kept == pytest.approx((sv[:20] ** 2).sum() / (sv**2).sum(), rel=1e-4)


def test_randomized_pca_reads_a_memmap_without_changing_it(tmp_path):
    x, _, _, _ = planted(tokens=800)
    disk = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=x.shape)
    disk[:] = x
    before = np.array(disk)
    in_ram = randomized_pca(x, 10, seed=3)
    on_disk = randomized_pca(disk, 10, seed=3, chunk_rows=100)
    np.testing.assert_allclose(np.abs(in_ram[0]), np.abs(on_disk[0]), rtol=1e-3, atol=1e-3)
    assert np.array_equal(np.array(disk), before)


def test_full_matrix_ica_over_the_limits_falls_back_to_pca():
    x, s, _, _ = planted(tokens=1000)
    result = run_ica(x, ICAConfig(n_components=5, pca=0, memory_budget=1000))
    assert result.pca_dims == 200 and "LAPACK" in result.notes[0]
    assert matched_correlations(s, result.sources).min() >= 0.9


def test_bad_component_counts_are_one_clear_error():
    x = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    with pytest.raises(SubnetScopeError, match="at most 8"):
        run_ica(x, ICAConfig(n_components=9))
    with pytest.raises(SubnetScopeError, match="fewer than the 5"):
        run_ica(x, ICAConfig(n_components=5, pca=3))


def test_key_feature_rules():
    w = np.array([0.1, -0.2, 5.0, 0.0, -4.0, 0.3, 0.05, 0.1, -0.1, 0.2])
    assert key_features(w, percentile=80).tolist() == [2, 4]
    assert key_features(w, threshold="zscore").tolist() == [2, 4]
    assert key_features(np.zeros(5), threshold="zscore").size == 0
    with pytest.raises(SubnetScopeError, match="unknown threshold"):
        key_features(w, threshold="top")
    with pytest.raises(SubnetScopeError, match="percentile"):
        key_features(w, percentile=100)


@pytest.mark.parametrize("pca", ["auto", 0])
def test_standardize_finds_planted_keys_despite_loud_layers(pca):
    x, s, _, keys = planted()
    x[:, :200] *= 50.0  # a "layer" whose neurons are 50× louder, as late layers are
    loud = run_ica(x, ICAConfig(n_components=5, pca=pca, standardize=False))
    flat = templates_from_mixing(loud.mixing, [0, 1, 2], WIDTHS).neurons(0)
    assert all(layer == 0 for layer, _ in flat)  # raw weights: the loud layer takes every slot
    result = run_ica(x, ICAConfig(n_components=5, pca=pca))  # standardized: the default
    assert matched_correlations(s, result.sources).min() >= 0.95
    np.testing.assert_allclose(result.transform(x), result.sources, atol=1e-3)
    corr = np.abs(np.corrcoef(s.T, result.sources.T)[:5, 5:])
    templates = templates_from_mixing(result.mixing, [0, 1, 2], WIDTHS, percentile=95.0)
    offsets = np.cumsum((0, *WIDTHS))
    for planted_c in range(5):
        found = templates.neurons(int(corr[planted_c].argmax()))
        assert {offsets[layer] + n for layer, n in found} == set(keys[planted_c].tolist())
