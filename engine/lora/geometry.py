"""Geometry of LoRA updates per module: norms, effective and stable ranks, cosines (exact)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd

from engine.lora.adapters import AdapterSet, module_kind, module_layer
from engine.lora.blend import BlendResult
from engine.lora.lowrank import (
    Factors,
    cosine,
    effective_rank,
    frobenius,
    singular_values,
    stable_rank,
)

GEOMETRY_COLUMNS = (
    "adapter",
    "role",
    "module",
    "layer",
    "kind",
    "rank",
    "numerical_rank",
    "norm",
    "effective_rank",
    "stable_rank",
)


def _row(name: str, role: str, module: str, f: Factors) -> dict:
    s = singular_values(f)  # (k,) exact, from the factors
    return {
        "adapter": name,
        "role": role,  # "adapter" | "blend"
        "module": module,
        "layer": module_layer(module),
        "kind": module_kind(module),
        "rank": f.rank,
        "numerical_rank": int(s.numel()),
        "norm": frobenius(f),
        "effective_rank": effective_rank(s),
        "stable_rank": stable_rank(s),
    }


def geometry_table(
    adapters: AdapterSet, blend: BlendResult | None = None, blend_name: str = "blend"
) -> pd.DataFrame:
    """One row per adapter (and the blend) and module: ‖ΔW‖_F, LoRA rank, effective/stable rank."""
    rows = [
        _row(a.name, "adapter", m, a.factors[m])
        for a in adapters.adapters
        for m in adapters.modules
    ]
    if blend is not None:
        rows += [_row(blend_name, "blend", m, blend.factors[m]) for m in adapters.modules]
    table = pd.DataFrame(rows, columns=list(GEOMETRY_COLUMNS))
    table["layer"] = table["layer"].astype("Int64")
    return table


def _inner(x: Factors, y: Factors) -> float:
    """<ΔW_x, ΔW_y>_F; 0 when either update is zero."""
    norm_x, norm_y = frobenius(x), frobenius(y)
    if norm_x == 0 or norm_y == 0:
        return 0.0
    return cosine(x, y) * norm_x * norm_y


def cosine_table(adapters: AdapterSet) -> pd.DataFrame:
    """Per module and pair of adapters (a before b): the cosine of their updates (NaN if zero)."""
    rows = []
    for module in adapters.modules:
        for x, y in combinations(adapters.adapters, 2):
            fx, fy = x.factors[module], y.factors[module]
            zero = frobenius(fx) == 0 or frobenius(fy) == 0
            rows.append(
                {
                    "module": module,
                    "layer": module_layer(module),
                    "kind": module_kind(module),
                    "a": x.name,
                    "b": y.name,
                    "cosine": math.nan if zero else cosine(fx, fy),
                }
            )
    table = pd.DataFrame(rows, columns=["module", "layer", "kind", "a", "b", "cosine"])
    table["layer"] = table["layer"].astype("Int64")
    return table


def cosine_matrix(adapters: AdapterSet) -> pd.DataFrame:
    """Names × names: Σ_modules <ΔW_a, ΔW_b> / (‖ΔW_a‖ ‖ΔW_b‖), all modules as one vector."""
    names = adapters.names
    n = len(names)
    gram = np.zeros((n, n))
    for module in adapters.modules:
        fs = [a.factors[module] for a in adapters.adapters]
        for i in range(n):
            gram[i, i] += frobenius(fs[i]) ** 2
            for j in range(i + 1, n):
                gram[i, j] += _inner(fs[i], fs[j])
    gram = np.triu(gram) + np.triu(gram, 1).T
    norms = np.sqrt(np.diag(gram))
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = gram / np.outer(norms, norms)
    matrix[np.outer(norms, norms) == 0] = np.nan
    return pd.DataFrame(matrix, index=list(names), columns=list(names))


def total_norm(factors: dict[str, Factors]) -> float:
    """‖ΔW‖_F over all modules, as one vector."""
    return math.sqrt(sum(frobenius(f) ** 2 for f in factors.values()))


def _clean(value: object) -> object:
    """A JSON-ready scalar: numpy scalars unwrapped, NaN and NA as None."""
    if hasattr(value, "item"):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def inspect_adapters(adapters: AdapterSet) -> dict:
    """A JSON-ready summary for `lora inspect`: configs, per-module geometry, cosines."""
    geometry = geometry_table(adapters)
    cosines = cosine_table(adapters)
    matrix = cosine_matrix(adapters)
    summary = []
    for a in adapters.adapters:
        rows = geometry[geometry["adapter"] == a.name]
        summary.append(
            {
                "name": a.name,
                "path": str(a.info.path),
                "base_model": a.info.base_model,
                "rank": a.info.rank,
                "alpha": a.info.alpha,
                "use_rslora": a.info.use_rslora,
                "scaling": a.info.scaling,
                "target_modules": list(a.info.target_modules),
                "modules": len(a.info.modules),
                "norm": total_norm(a.factors),
                "mean_effective_rank": float(rows["effective_rank"].mean()),
                "mean_stable_rank": float(rows["stable_rank"].mean()),
            }
        )

    def records(table: pd.DataFrame) -> list[dict]:
        return [{k: _clean(v) for k, v in row.items()} for row in table.to_dict(orient="records")]

    return {
        "adapters": summary,
        "modules": list(adapters.modules),
        "cosine_overall": {
            "names": list(adapters.names),
            "matrix": [[_clean(float(v)) for v in row] for row in matrix.to_numpy()],
        },
        "geometry": records(geometry),
        "cosine": records(cosines),
    }
