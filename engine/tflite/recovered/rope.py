"""RoPE bases from the inverse-frequency constants each query's COS/SIN are computed from."""

from __future__ import annotations

import math

import numpy as np

from engine.tflite.recovered.base import FieldReader


class RopeFields(FieldReader):
    def _rope(self) -> None:
        if not self.blocks:
            self._unknown(("rope_theta",), f"no attention found in {self.where}")
            return
        if any(len(a.rope_tables) != 1 for a in self.blocks):
            self._unknown(("rope_theta",), "not one COS/SIN frequency table per query")
            return
        if self.values is None:
            self._unknown(("rope_theta",), "the inverse-frequency constants were not read")
            return
        bases: dict[int, float] = {}
        for table in {a.rope_tables[0] for a in self.blocks}:
            base = rope_base(np.asarray(self.values(self.ctx.sg.index, table)))
            if base is None:
                self._unknown(("rope_theta",), f"tensor {table} is no geometric frequency table")
                return
            bases[table] = base
        types = self.out["layer_types"].value or [None] * len(self.blocks)
        by_type: dict[str, set[float]] = {}
        for a, kind in zip(self.blocks, types, strict=True):
            by_type.setdefault(kind or "all", set()).add(bases[a.rope_tables[0]])
        tables = [a.rope_tables[0] for a in self.blocks]
        ops = [c for t in set(tables) for c in self.ctx.gi.consumers[t]]  # position × inv_freq
        how = "base = inv_freq[k] ** (-head_dim / 2k) of the constant each query's COS/SIN read"
        if len(set(bases.values())) == 1:
            self._set("rope_theta", next(iter(bases.values())), ops, tables, how)
        elif all(len(v) == 1 for v in by_type.values()) and "all" not in by_type:
            value = {k: v.pop() for k, v in by_type.items()}
            self._set("rope_theta", value, ops, tables, how + ", per layer type")
        else:
            self._unknown(("rope_theta",), "bases differ within one layer type")


def rope_base(inv_freq: np.ndarray) -> float | None:
    """The RoPE base of an inverse-frequency table inv[k] = base ** (-2k / head_dim), k < d/2,
    to six significant digits; None when the table is not that geometric sequence (scaled
    RoPE variants)."""
    inv = np.asarray(inv_freq, dtype=np.float64).ravel()
    n = inv.size
    if n < 2 or not np.all(inv > 0) or not math.isclose(inv[0], 1.0, rel_tol=1e-6):
        return None
    # inv[k] = base ** (-k / n): read it at the largest k, where float32 rounding matters least
    base = float(inv[-1] ** (-n / (n - 1)))
    expected = base ** (-np.arange(n) / n)
    if not np.allclose(inv, expected, rtol=1e-4):
        return None
    return float(f"{base:.6g}")
