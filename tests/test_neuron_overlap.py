"""Overlap statistics of neuron sets against scipy's hypergeometric distribution and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import hypergeom

from engine.errors import SubnetScopeError
from engine.neurons.overlap import (
    NeuronSet,
    benjamini_hochberg,
    hypergeom_pmf,
    layered_pmf,
    layered_sf,
    overlap,
    overlap_matrix,
)


def neuron_set(spec: str, neurons, layers=None) -> NeuronSet:
    return NeuronSet(spec, "list", spec, frozenset(neurons), layers=layers)


@pytest.mark.parametrize(
    ("population", "successes", "draws"),
    [(10, 3, 4), (1536, 77, 80), (5, 4, 3), (46080, 2304, 100), (7, 0, 3), (9, 9, 2)],
)
def test_pmf_equals_scipy(population, successes, draws) -> None:
    support = np.arange(min(successes, draws) + 1)
    expected = hypergeom.pmf(support, population, successes, draws)
    np.testing.assert_allclose(hypergeom_pmf(population, successes, draws), expected, atol=1e-12)


def test_pooled_p_value_equals_scipy_survival() -> None:
    rng = np.random.default_rng(0)
    widths = [40, 40, 40]
    universe = [(lay, n) for lay in range(3) for n in range(40)]
    for _ in range(20):
        pick_a = rng.choice(len(universe), size=rng.integers(1, 30), replace=False)
        pick_b = rng.choice(len(universe), size=rng.integers(1, 30), replace=False)
        a = neuron_set("a", [universe[i] for i in pick_a])
        b = neuron_set("b", [universe[i] for i in pick_b])
        o = overlap(a, b, widths)
        k = len(a.neurons & b.neurons)
        assert o.shared == k and o.population == 120
        assert o.p_value == pytest.approx(hypergeom.sf(k - 1, 120, len(a), len(b)), rel=1e-9)
        assert o.jaccard == pytest.approx(k / len(a.neurons | b.neurons))
        # per layer: the same test within each layer
        for row in o.layers.itertuples():
            expected = hypergeom.sf(row.shared - 1, row.neurons, row.size_a, row.size_b)
            assert row.p_value == pytest.approx(expected, rel=1e-7, abs=1e-15)
            assert row.expected == pytest.approx(row.size_a * row.size_b / row.neurons)


def test_layered_null_with_one_layer_is_the_hypergeometric() -> None:
    for k in range(0, 6):
        assert layered_sf(k, [(50, 8, 12)]) == pytest.approx(
            hypergeom.sf(k - 1, 50, 8, 12) if k > 0 else 1.0, rel=1e-9
        )


def test_layered_null_equals_brute_force_enumeration() -> None:
    """Two small layers: enumerate every placement of both sets within each layer."""
    layers = [(5, 2, 3), (4, 1, 2)]
    counts: dict[int, int] = {}
    total = 0
    placements = []
    for population, size_a, size_b in layers:
        items = range(population)
        placements.append(
            [
                len(set(x) & set(y))
                for x in itertools.combinations(items, size_a)
                for y in itertools.combinations(items, size_b)
            ]
        )
    for shared in itertools.product(*placements):
        counts[sum(shared)] = counts.get(sum(shared), 0) + 1
        total += 1
    exact = np.array([counts.get(k, 0) / total for k in range(max(counts) + 1)])
    np.testing.assert_allclose(layered_pmf(layers), exact, atol=1e-12)
    for k in range(len(exact) + 1):
        assert layered_sf(k, layers) == pytest.approx(exact[k:].sum(), abs=1e-12)


def test_layer_concentration_alone_is_not_called_significant() -> None:
    """Two sets drawn independently inside the same last layer: the pooled null calls them
    related (they share a layer), the layered null does not."""
    rng = np.random.default_rng(1)
    widths = [100] * 10
    a = neuron_set("a", [(9, int(n)) for n in rng.choice(100, 40, replace=False)])
    b = neuron_set("b", [(9, int(n)) for n in rng.choice(100, 40, replace=False)])
    o = overlap(a, b, widths)
    assert o.p_value < 1e-6
    assert o.p_layered > 0.01
    assert o.expected == pytest.approx(16.0)


def test_planted_overlap_is_significant_under_both_nulls() -> None:
    widths = [200] * 4
    shared = [(lay, n) for lay in range(4) for n in range(10)]
    a = neuron_set("a", shared + [(0, 100 + i) for i in range(10)])
    b = neuron_set("b", shared + [(3, 150 + i) for i in range(10)])
    o = overlap(a, b, widths)
    assert o.shared == 40 and o.p_value < 1e-30 and o.p_layered < 1e-30
    assert o.enrichment > 10


def test_sets_are_compared_on_the_layers_both_can_hold() -> None:
    widths = [10, 10, 10]
    a = neuron_set("a", [(0, 1), (1, 1), (2, 1)], layers=(0, 1))  # only layers 0, 1 analysed
    b = neuron_set("b", [(0, 1), (2, 1), (2, 2)])
    o = overlap(a, b, widths)
    assert o.population == 20 and o.size_a == 2 and o.size_b == 1 and o.shared == 1
    assert list(o.layers["layer"]) == [0, 1]


def test_matrix_has_every_pair_and_fdr_q_values() -> None:
    widths = [30, 30]
    sets = [neuron_set(f"s{i}", [(i % 2, n) for n in range(i, i + 8)]) for i in range(4)]
    table = overlap_matrix(sets, widths)
    assert len(table) == 6
    assert set(zip(table["a"], table["b"], strict=True)) == {
        (f"s{i}", f"s{j}") for i in range(4) for j in range(i + 1, 4)
    }
    np.testing.assert_allclose(table["q_layered"], benjamini_hochberg(table["p_layered"]))
    assert (table["q_layered"] >= table["p_layered"] - 1e-15).all()


def test_benjamini_hochberg_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    # sorted: 0.01, 0.03, 0.04, 0.5 → ×4/rank: 0.04, 0.06, 0.0533, 0.5 → monotone from the top
    expected = [0.04, 0.0533333, 0.0533333, 0.5]
    np.testing.assert_allclose(benjamini_hochberg(p), expected, rtol=1e-5)


def test_a_set_outside_the_layout_is_one_clear_error() -> None:
    a = neuron_set("mine", [(5, 1)])
    b = neuron_set("b", [(0, 1)])
    with pytest.raises(SubnetScopeError, match="'mine' names neuron 5.1"):
        overlap(a, b, [10, 10])
    with pytest.raises(SubnetScopeError, match="share a name"):
        overlap_matrix([b, b], [10, 10])


def test_empty_overlap_has_p_one() -> None:
    o = overlap(neuron_set("a", [(0, 1)]), neuron_set("b", [(0, 2)]), [10])
    assert o.shared == 0 and o.p_value == 1.0 and o.p_layered == 1.0
    assert o.jaccard == 0.0 and not math.isnan(o.expected)
