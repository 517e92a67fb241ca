"""The passport's overlap matrix on the demo's layout (30 layers × 1536 neurons): 20 ICA-sized
sets (5 % of the neurons each) and 6 top-100 sets, every pair tested under both nulls.

Ours computes each layer's hypergeometric pmf in one vectorized log-gamma expression; the baseline
is the same matrix with scipy.stats.hypergeom.pmf per layer (≈0.7 ms a call, thousands of calls).
Both give the same p-values (their largest difference is reported).
"""

from __future__ import annotations

import importlib
import time

import numpy as np
from scipy.stats import hypergeom

from benchmarks.runner import Result, benchmark, compare

WIDTHS = (1536,) * 30
SEED = 0


def demo_like_sets():
    from engine.neurons.overlap import NeuronSet

    rng = np.random.default_rng(SEED)
    total = sum(WIDTHS)

    def draw(spec: str, size: int) -> NeuronSet:
        flat = rng.choice(total, size=size, replace=False)
        neurons = frozenset((int(f // 1536), int(f % 1536)) for f in flat)
        return NeuronSet(spec, "list", spec, neurons)

    return [draw(f"ica:{i}", total // 20) for i in range(20)] + [
        draw(f"top:{i}", 100) for i in range(6)
    ]


def _scipy_pmf(population: int, successes: int, draws: int) -> np.ndarray:
    return hypergeom.pmf(np.arange(min(successes, draws) + 1), population, successes, draws)


@benchmark("neuron_overlap", repeats=3)
def run(repeats: int) -> Result:
    # The module itself (its pmf is swapped below); `engine.neurons.overlap` names the function.
    module = importlib.import_module("engine.neurons.overlap")

    sets = demo_like_sets()
    ours, base, tables = [], [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        tables["ours"] = module.overlap_matrix(sets, WIDTHS)
        ours.append(time.perf_counter() - start)
        original = module.hypergeom_pmf
        module.hypergeom_pmf = _scipy_pmf
        try:
            start = time.perf_counter()
            tables["scipy"] = module.overlap_matrix(sets, WIDTHS)
            base.append(time.perf_counter() - start)
        finally:
            module.hypergeom_pmf = original
    differences = {
        column: float(np.abs(tables["ours"][column] - tables["scipy"][column]).max())
        for column in ("p_layered", "q_layered")
    }
    return compare(
        "neuron_overlap",
        f"overlap matrix of {len(sets)} sets ({len(tables['ours'])} pairs)",
        ours,
        "the same with scipy.stats.hypergeom.pmf per layer",
        base,
        details={"max_abs_difference": differences},
    )
