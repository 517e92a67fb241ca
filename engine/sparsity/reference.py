"""The seed's own sparsity numbers: sparsity_in_rl's check_sparsity.py, number for number.

What that script does (SagnikMukherjee/sparsity_in_rl, the command seed 000 lists):
- loads both checkpoints with `torch_dtype=bfloat16` by default, so fp32 weights are rounded
  to bf16 before anything is compared;
- Δ = rl − sft computed in that dtype (a bf16 subtraction, rounded to bf16);
- "Percentage of 0 values in the task vector": count(Δ == 0) / numel over all parameters;
- per tolerance, "Fraction close to zero": `torch.isclose(Δ, 0, atol=τ)` (rtol left at its default
  1e-5, which multiplies |0| and so adds nothing) over all parameters. In bf16 the threshold
  `atol + rtol·|0|` is itself a bf16 number: |Δ| ≤ bf16(τ), not ≤ τ;
- "Layer-wise sparsity": per tensor the share of Δ != 0, then per layer the *unweighted* mean of
  those shares over tensors whose name starts with `model.layers` (layer = the third dot-field).
  Despite its name it is a changed share, and a GPT-2 (`transformer.h.N`) model gets no layers.

The diff's own criteria compare in the checkpoints' dtype and weight every element equally;
these numbers are computed in the same streamed pass when `DiffConfig.reference` is on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from engine.sparsity.config import check_reference_dtype, tolerance_key

SCRIPT = "sparsity_in_rl/check_sparsity.py"
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
DEFAULT_DTYPE = "bfloat16"  # the script's --torch_dtype default
ISCLOSE_RTOL = 1e-5  # torch.isclose's default, which the script does not change
LAYER_PREFIX = "model.layers"
REFERENCE_FILE = "reference.parquet"


def reference_dtype(name: str) -> torch.dtype:
    return DTYPES[check_reference_dtype(name)]


def script_layer(name: str) -> str | None:
    """The script's layer of a tensor name: the third dot-field of names under `model.layers`."""
    return name.split(".")[2] if name.startswith(LAYER_PREFIX) else None


def script_delta(b: torch.Tensor, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """rl − sft as the script gets it — both cast to `dtype`, subtracted in `dtype` — returned
    in float32 (exact: bf16 and fp16 values are float32 values).

    Computed as float32(t) − float32(b), rounded once to `dtype`: what torch's CPU kernels do
    for a bf16 / fp16 subtraction, at a third of the time of the bf16 ops and isclose calls
    (measured: 48 ms against 135 ms per 2M weights; equality tested on random and special
    values in tests/test_sparsity_reference.py)."""
    bd = b.to(dtype)
    td = t.to(dtype)
    if dtype == torch.float32:
        return td - bd
    return (td.float() - bd.float()).to(dtype).float()


def isclose_bound(tau: float, dtype: torch.dtype) -> float:
    """torch.isclose(Δ, 0, atol=τ)'s bound `atol + rtol·|0|`, evaluated in `dtype` as isclose
    evaluates it: close ⟺ |Δ| ≤ this (NaN and ±inf never are)."""
    zero = torch.zeros(1, dtype=dtype)
    return float((zero.abs() * ISCLOSE_RTOL + tau).float())


@dataclass
class ReferenceCounts:
    """One tensor's counts as the script makes them."""

    name: str
    numel: int = 0
    zeros: int = 0  # Δ == 0
    close: dict[str, int] = field(default_factory=dict)  # tolerance label → isclose(Δ, 0, atol)

    def add_block(self, b: torch.Tensor, t: torch.Tensor, dtype: torch.dtype, taus) -> None:
        """Count one row block: both sides cast to `dtype` first, as from_pretrained does."""
        self.numel += b.numel()
        delta = script_delta(b, t, dtype)
        self.zeros += int(torch.count_nonzero(delta == 0))
        magnitude = delta.abs()
        for tau in taus:
            key = tolerance_key(tau)
            hits = int(torch.count_nonzero(magnitude <= isclose_bound(tau, dtype)))
            self.close[key] = self.close.get(key, 0) + hits

    @property
    def nonzero_fraction(self) -> float:
        return (self.numel - self.zeros) / self.numel if self.numel else math.nan


def reference_table(counts: list[ReferenceCounts], taus) -> pd.DataFrame:
    """Per tensor: the script's layer, numel, zeros, nonzero share, and isclose counts per τ."""
    rows = []
    for c in counts:
        row: dict[str, Any] = {
            "tensor": c.name,
            "script_layer": script_layer(c.name),
            "numel": c.numel,
            "zeros": c.zeros,
            "nonzero_fraction": c.nonzero_fraction,
        }
        row |= {f"close_{tolerance_key(t)}": c.close.get(tolerance_key(t), 0) for t in taus}
        rows.append(row)
    columns = ["tensor", "script_layer", "numel", "zeros", "nonzero_fraction"]
    columns += [f"close_{tolerance_key(t)}" for t in taus]
    return pd.DataFrame(rows, columns=columns)


def reference_summary(table: pd.DataFrame, taus, dtype: str) -> dict[str, Any]:
    """The script's printed numbers, and their complements as SubnetScope reads them."""
    numel = int(table["numel"].sum())
    close = {
        tolerance_key(t): int(table[f"close_{tolerance_key(t)}"].sum()) / numel if numel else None
        for t in taus
    }
    layers: dict[str, list[float]] = {}
    for layer, share in zip(table["script_layer"], table["nonzero_fraction"], strict=True):
        if isinstance(layer, str):  # parquet and pandas turn None into NaN
            layers.setdefault(layer, []).append(float(share))
    # The script sorts layers by int(layer); a non-numeric third field would make it crash.
    order = sorted(layers, key=lambda k: int(k) if k.isdigit() else math.inf)
    return {
        "script": SCRIPT,
        "dtype": dtype,
        "tensors": len(table),
        "numel": numel,
        "zero_fraction": int(table["zeros"].sum()) / numel if numel else None,
        "close_fraction": close,
        "changed_fraction": {k: None if v is None else 1 - v for k, v in close.items()},
        "layers": {k: sum(layers[k]) / len(layers[k]) for k in order},
        "note": None
        if layers
        else f"no tensor name starts with '{LAYER_PREFIX}': the script's layer-wise table "
        "is empty for this model",
    }


def script_report(summary: dict[str, Any]) -> str:
    """The summary in the script's own print format, to compare with its output line by line."""
    lines = [
        f"Percentage of 0 values in the task vector: {summary['zero_fraction']:.4f}",
        *(
            f"Tolerance = {float(k):.0e} -> Fraction close to zero: {v:.4f}"
            for k, v in summary["close_fraction"].items()
        ),
        "",
        "Layer-wise sparsity:",
        *(f"Layer {k}: {v:.4f}" for k, v in summary["layers"].items()),
    ]
    return "\n".join(lines)
