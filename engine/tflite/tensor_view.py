"""What a tensor inspector shows: summary statistics, a value sample, a pooled 2-D view."""

from __future__ import annotations

import numpy as np
import pandas as pd


def tensor_stats(values: np.ndarray) -> dict[str, float]:
    """min, max, mean, std and the share of exact zeros, computed in float64 for stability."""
    flat = np.asarray(values).reshape(-1)
    if flat.size == 0 or not np.issubdtype(flat.dtype, np.number):
        return {"count": float(flat.size)}
    x = flat.astype(np.float64)
    finite = x[np.isfinite(x)]
    return {
        "count": float(x.size),
        "min": float(finite.min()) if finite.size else float("nan"),
        "max": float(finite.max()) if finite.size else float("nan"),
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "std": float(finite.std()) if finite.size else float("nan"),
        "zeros": float((x == 0).mean()),
        "non_finite": float((~np.isfinite(x)).mean()),
    }


def value_sample(values: np.ndarray, max_values: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """At most `max_values` values drawn without replacement (all of them when fewer)."""
    flat = np.asarray(values).reshape(-1)
    if flat.size > max_values:
        flat = flat[np.random.default_rng(seed).choice(flat.size, max_values, replace=False)]
    return pd.DataFrame({"value": flat.astype(np.float64)})


def pooled_2d(values: np.ndarray, max_side: int = 64) -> pd.DataFrame:
    """A 2-D view (higher ranks flattened to rows × last axis), mean-pooled in blocks so that
    neither side exceeds `max_side`; long-format cells for a heatmap."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim == 0:
        array = array.reshape(1, 1)
    elif array.ndim == 1:
        array = array.reshape(1, -1)
    else:
        array = array.reshape(-1, array.shape[-1])
    rows, cols = array.shape
    fr, fc = -(-rows // max_side), -(-cols // max_side)  # ceil division: block sizes
    pr, pc = -(-rows // fr), -(-cols // fc)
    padded = np.full((pr * fr, pc * fc), np.nan, dtype=np.float32)
    padded[:rows, :cols] = array
    pooled = np.nanmean(padded.reshape(pr, fr, pc, fc), axis=(1, 3))  # (pr, pc)
    r, c = np.meshgrid(np.arange(pr), np.arange(pc), indexing="ij")
    return pd.DataFrame({"row": r.ravel(), "col": c.ravel(), "value": pooled.ravel()})
