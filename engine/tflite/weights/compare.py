"""Compare one TFLite constant with one HF parameter: dequantize, undo the layout, measure |Δ|.

Streamed in slices of the leading axis, so a 49152 × 576 embedding table never needs more than a
few MB of scratch. Quantized integers are dequantized as `values._dequantize` does:
`(q - zero_point) * scale` in float32, per tensor or per channel (`quantized_dimension`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.tflite.graph import TensorInfo

CHUNK = 1 << 20  # values compared per slice
# Half a step, plus the float32 rounding of (q - zero) * scale and of |Δ| for |q| ≤ 127: a value
# exactly halfway between two levels lands a few ulps past half a step (seen: 0.5000018).
HALF_STEP = 0.5 + 1e-4

Transform = Callable[[np.ndarray], np.ndarray]  # HF array → the TFLite tensor's layout


@dataclass(frozen=True)
class Quant:
    """A tensor's quantization as a broadcastable scale / zero point (None for floats)."""

    scale: np.ndarray
    zero: np.ndarray
    axis: int | None  # the per-channel axis, None for per-tensor

    @property
    def step(self) -> float:
        return float(self.scale.max())


def quant_of(t: TensorInfo) -> Quant | None:
    q = t.quantization
    if q is None or not q.scale or t.dtype.startswith("float"):
        return None
    scale = np.asarray(q.scale, dtype=np.float32)
    zero = np.asarray(q.zero_point or (0,), dtype=np.float32)
    if len(zero) == 1 and len(scale) > 1:
        zero = np.full_like(scale, zero[0])
    axis = q.quantized_dimension if len(scale) > 1 else None
    return Quant(scale, zero, axis)


def quant_kind(t: TensorInfo) -> str:
    q = quant_of(t)
    if q is None:
        return "none"
    return f"per-channel (axis {q.axis})" if q.axis is not None else "per-tensor"


@dataclass(frozen=True)
class Difference:
    max_abs: float
    mean_abs: float
    # max over channels of max |Δ| / scale; 0 or inf for a float tensor (exact or not)
    step_ratio: float


def _broadcast(values: np.ndarray, axis: int, ndim: int, rows: slice) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    out = values.reshape(shape)
    return out[rows] if axis == 0 else out


def difference(raw: np.ndarray, q: Quant | None, hf: np.ndarray) -> Difference:
    """|Δ| between the stored tensor `raw` (dequantized with `q`) and `hf` (same shape)."""
    if raw.shape != hf.shape:
        raise ValueError(f"shapes differ: {raw.shape} vs {hf.shape}")
    flat_raw = raw.reshape(1, -1) if raw.ndim == 0 else raw
    flat_hf = hf.reshape(1, -1) if hf.ndim == 0 else hf
    rows = flat_raw.shape[0] if flat_raw.ndim else 1
    per_row = max(1, flat_raw.size // max(rows, 1))
    step_rows = max(1, CHUNK // per_row)
    total, worst, ratio = 0.0, 0.0, 0.0
    for start in range(0, rows, step_rows):
        part = slice(start, min(rows, start + step_rows))
        stored = flat_raw[part]
        if q is None:
            values = stored.astype(np.float32, copy=False)
        else:
            scale = q.scale if q.axis is None else _broadcast(q.scale, q.axis, raw.ndim, part)
            zero = q.zero if q.axis is None else _broadcast(q.zero, q.axis, raw.ndim, part)
            values = (stored.astype(np.float32) - zero) * scale
        delta = np.abs(values - flat_hf[part].astype(np.float32, copy=False))
        if delta.size:
            worst = max(worst, float(delta.max()))
            total += float(delta.sum(dtype=np.float64))
            if q is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    share = delta / scale  # a zero scale: 0 / 0 is exact, x / 0 is not
                ratio = max(ratio, float(np.nan_to_num(share, nan=0.0, posinf=np.inf).max()))
    mean = total / max(raw.size, 1)
    if q is None:
        ratio = 0.0 if worst == 0 else float("inf")
    return Difference(worst, mean, ratio)


def within_step(d: Difference, quantized: bool) -> bool:
    """Exact for a float tensor; within half a step (per channel) for a quantized one."""
    return d.step_ratio <= HALF_STEP if quantized else d.max_abs == 0


def at(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Values at flat positions of the array's own shape, without copying a transposed view."""
    if values.ndim == 0:
        return values.reshape(1)[positions]
    return values[np.unravel_index(positions, values.shape)]


def sample_close(
    raw: np.ndarray, q: Quant | None, hf_sample: np.ndarray, positions: np.ndarray
) -> bool:
    """A cheap screen before a full comparison: do a few spread-out values agree?"""
    stored = raw.reshape(-1)[positions]
    if q is None:
        return bool(np.array_equal(stored.astype(np.float32), hf_sample.astype(np.float32)))
    if q.axis is None:
        scale, zero = q.scale, q.zero
    else:
        channel = np.unravel_index(positions, raw.shape)[q.axis]
        scale, zero = q.scale[channel], q.zero[channel]
    values = (stored.astype(np.float32) - zero) * scale
    delta = np.abs(values - hf_sample.astype(np.float32))
    return bool(np.all(delta <= scale * HALF_STEP))
