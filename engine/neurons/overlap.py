"""How much two neuron sets overlap, and whether more than chance would give.

Chance is a random placement of each set among the neurons of the layers both sets could draw
from. Two nulls are reported:

- `p_value`: one hypergeometric draw over all those neurons, P[X ≥ k] with
  X ~ Hypergeom(N = neurons, K = |A|, n = |B|).
- `p_layered`: each set keeps its per-layer sizes and is placed at random within each layer, so
  X = Σ_l X_l with independent X_l ~ Hypergeom(N_l, K_l, n_l); its distribution is the exact
  convolution of the per-layer ones. Two sets that merely favour the same layers (the last
  layers, say) look significant under the first null and not under this one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln
from scipy.stats import hypergeom

from engine.errors import SubnetScopeError

Neuron = tuple[int, int]


@dataclass(frozen=True)
class NeuronSet:
    """Neurons named by one view; `spec` is what the CLI takes back (`ica:3`, `pruning:100`)."""

    spec: str
    area: str  # ica | pruning | updates | adapter | list
    label: str
    neurons: frozenset[Neuron]
    layers: tuple[int, ...] | None = None  # the layers it could draw from; None: every layer
    model: str = ""  # the model it was computed on
    note: str = ""
    ranked: tuple[Neuron, ...] = ()  # strongest first, where the view ranks its neurons

    @property
    def ordered(self) -> list[Neuron]:
        return list(self.ranked) if self.ranked else sorted(self.neurons)

    def __len__(self) -> int:
        return len(self.neurons)

    def by_layer(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for layer, _ in self.neurons:
            counts[layer] = counts.get(layer, 0) + 1
        return counts


ROW_COLUMNS = (
    "a",
    "b",
    "population",
    "size_a",
    "size_b",
    "shared",
    "jaccard",
    "expected",
    "enrichment",
    "p_value",
    "p_layered",
)


@dataclass(frozen=True)
class Overlap:
    a: str
    b: str
    population: int  # neurons of the shared layers
    size_a: int  # within the shared layers
    size_b: int
    shared: int
    jaccard: float
    expected: float  # under the layered null (= the pooled one's K·n/N when layers are even)
    enrichment: float  # shared / expected
    p_value: float  # pooled hypergeometric, P[X ≥ shared]
    p_layered: float  # per-layer hypergeometrics convolved, P[Σ X_l ≥ shared]
    layers: pd.DataFrame  # layer, neurons, size_a, size_b, shared, expected, jaccard, p_value

    def row(self) -> dict:
        return {name: getattr(self, name) for name in ROW_COLUMNS}


def hypergeom_sf(k: int, population: int, successes: int, draws: int) -> float:
    """P[X ≥ k] for X ~ Hypergeom(population, successes, draws)."""
    if k <= 0:
        return 1.0
    return float(hypergeom.sf(k - 1, population, successes, draws))


def _log_choose(n: np.ndarray | int, k: np.ndarray) -> np.ndarray:
    return gammaln(np.asarray(n) + 1.0) - gammaln(k + 1.0) - gammaln(np.asarray(n) - k + 1.0)


def hypergeom_pmf(population: int, successes: int, draws: int) -> np.ndarray:
    """P[X = 0..min(K, n)] for X ~ Hypergeom(N, K, n), vectorized over the support (scipy's
    pmf costs ~0.7 ms a call, and a matrix of sets over 30 layers makes thousands of calls)."""
    k = np.arange(min(successes, draws) + 1, dtype=np.float64)
    log = (
        _log_choose(successes, k)
        + _log_choose(population - successes, draws - k)
        - _log_choose(population, np.float64(draws))
    )
    with np.errstate(invalid="ignore"):  # impossible k (n − k > N − K): -inf or nan → 0
        pmf = np.exp(log)
    return np.where((draws - k) > (population - successes), 0.0, pmf)


def _tail(pmf: np.ndarray, k: int) -> float:
    """P[X ≥ k] from a pmf over 0, 1, ..."""
    if k <= 0:
        return 1.0
    return float(min(1.0, pmf[k:].sum())) if k < pmf.size else 0.0


def layered_pmf(layers: Iterable[tuple[int, int, int] | np.ndarray]) -> np.ndarray:
    """Exact pmf of Σ_l X_l, X_l ~ Hypergeom(N_l, K_l, n_l) independent, for (N_l, K_l, n_l)
    (or for each layer's pmf, already computed)."""
    pmf = np.ones(1)
    for layer in layers:
        one = layer if isinstance(layer, np.ndarray) else hypergeom_pmf(*layer)
        if one.size > 1:
            pmf = np.convolve(pmf, one)
    return pmf


def layered_sf(k: int, layers: Sequence[tuple[int, int, int]]) -> float:
    """P[Σ_l X_l ≥ k] under `layered_pmf`."""
    return _tail(layered_pmf(layers), k)


def _domain(a: NeuronSet, b: NeuronSet, widths: Sequence[int]) -> list[int]:
    layers = set(range(len(widths)))
    for s in (a, b):
        if s.layers is not None:
            layers &= set(s.layers)
    return sorted(layers)


def _indicator(s: NeuronSet, widths: Sequence[int]) -> np.ndarray:
    """The set as a boolean over the flat neuron index (layer offsets + neuron)."""
    offsets = np.concatenate([[0], np.cumsum(widths)])
    pairs = np.array(sorted(s.neurons), dtype=np.int64).reshape(-1, 2)
    sizes = np.asarray(widths, dtype=np.int64)
    layer_ok = (pairs[:, 0] >= 0) & (pairs[:, 0] < len(widths))
    ok = layer_ok & (pairs[:, 1] >= 0)
    ok[layer_ok] &= pairs[layer_ok, 1] < sizes[pairs[layer_ok, 0]]
    if not ok.all():
        layer, neuron = pairs[~ok][0]
        raise SubnetScopeError(
            f"set '{s.spec}' names neuron {layer}.{neuron}, outside this model's layers × "
            "neurons; it was built on a model of another layout"
        )
    flat = np.zeros(int(offsets[-1]), dtype=bool)
    flat[offsets[pairs[:, 0]] + pairs[:, 1]] = True
    return flat


def overlap(
    a: NeuronSet, b: NeuronSet, widths: Sequence[int], _flat: dict | None = None
) -> Overlap:
    """Jaccard, the expected overlap and both p-values of `a` against `b`, and per layer."""
    layers = _domain(a, b, widths)
    flat = _flat if _flat is not None else {}
    for s in (a, b):
        if s.spec not in flat:
            flat[s.spec] = _indicator(s, widths)
    starts = np.concatenate([[0], np.cumsum(widths)])[:-1]
    ia, ib = flat[a.spec], flat[b.spec]
    k_a = np.add.reduceat(ia.astype(np.int64), starts)[layers]
    k_b = np.add.reduceat(ib.astype(np.int64), starts)[layers]
    k = np.add.reduceat((ia & ib).astype(np.int64), starts)[layers]
    n_l = np.asarray(widths, dtype=np.int64)[layers]
    union = k_a + k_b - k
    pmfs = [hypergeom_pmf(int(n), int(p), int(q)) for n, p, q in zip(n_l, k_a, k_b, strict=True)]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_layer = pd.DataFrame(
            {
                "layer": layers,
                "neurons": n_l,
                "size_a": k_a,
                "size_b": k_b,
                "shared": k,
                "expected": k_a * k_b / n_l,
                "jaccard": np.where(union > 0, k / union, np.nan),
                "p_value": [_tail(pmf, int(x)) for pmf, x in zip(pmfs, k, strict=True)],
            }
        )
    population = int(n_l.sum())
    size_a, size_b, shared = int(k_a.sum()), int(k_b.sum()), int(k.sum())
    union_all = size_a + size_b - shared
    expected = float(per_layer["expected"].sum())
    return Overlap(
        a=a.spec,
        b=b.spec,
        population=population,
        size_a=size_a,
        size_b=size_b,
        shared=shared,
        jaccard=shared / union_all if union_all else float("nan"),
        expected=expected,
        enrichment=shared / expected if expected > 0 else float("nan"),
        p_value=hypergeom_sf(shared, population, size_a, size_b) if population else 1.0,
        p_layered=_tail(layered_pmf(pmfs), shared),
        layers=per_layer,
    )


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """False-discovery-rate adjusted p-values (q-values) of a family of tests."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    out = np.empty_like(q)
    out[order] = q
    return out


def overlaps(sets: Sequence[NeuronSet], widths: Sequence[int]) -> list[Overlap]:
    """Every unordered pair of sets, each set's indicator built once."""
    specs = [s.spec for s in sets]
    if len(set(specs)) != len(specs):
        raise SubnetScopeError("two sets share a name; give each set once")
    flat: dict[str, np.ndarray] = {}
    return [overlap(a, b, widths, flat) for a, b in itertools.combinations(sets, 2)]


def overlap_table(pairs: Sequence[Overlap]) -> pd.DataFrame:
    """One row of `Overlap.row()` per pair, plus `q_layered`, the Benjamini–Hochberg q-value of
    `p_layered` over all the pairs (a matrix is many tests)."""
    table = pd.DataFrame([p.row() for p in pairs], columns=list(ROW_COLUMNS))
    table["q_layered"] = benjamini_hochberg(table["p_layered"].to_numpy())
    return table


def overlap_matrix(sets: Sequence[NeuronSet], widths: Sequence[int]) -> pd.DataFrame:
    """`overlap_table` of every pair of `sets`."""
    return overlap_table(overlaps(sets, widths))
