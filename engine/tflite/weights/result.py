"""What a weight match found: one row per matched TFLite constant, and both unmatched lists."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class WeightRow:
    """One TFLite constant tensor and the HF parameter(s) whose values it holds."""

    subgraph: int
    subgraph_name: str
    tensor: int
    name: str
    dtype: str
    quantization: str  # "none", "per-tensor" or "per-channel (axis N)"
    shape: tuple[int, ...]
    buffer: int
    hf: tuple[str, ...]  # several when their values are identical (one stored copy)
    transform: str  # "as stored", "transposed", "reshaped", "1 + w"
    rule: str  # "name", "content" or "name (values differ)"
    max_abs: float
    mean_abs: float
    step: float | None  # the largest quantization scale; None for a float tensor
    step_ratio: float  # max over channels of max |Δ| / scale (within step: ≤ 0.5)
    within_step: bool  # exact for a float tensor
    subgraphs: tuple[str, ...]  # every subgraph that holds this buffer


@dataclass(frozen=True)
class UnmatchedTensor:
    subgraph: int
    subgraph_name: str
    tensor: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class UnmatchedParam:
    name: str
    shape: tuple[int, ...]
    dtype: str
    reason: str


@dataclass(frozen=True)
class WeightMatch:
    """`match_weights`' answer for one TFLite model and one HF folder."""

    model: str
    hf_folder: str
    rows: tuple[WeightRow, ...]
    tflite_unmatched: tuple[UnmatchedTensor, ...]
    hf_unmatched: tuple[UnmatchedParam, ...]
    hf_total: int
    hf_placements: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hf_buffers: dict[str, int] = field(default_factory=dict)  # distinct buffers per parameter
    seconds: float = 0.0

    @property
    def constants(self) -> int:
        return len(self.rows) + len(self.tflite_unmatched)

    @property
    def max_abs(self) -> float:
        return max((r.max_abs for r in self.rows), default=0.0)

    @property
    def all_within_step(self) -> bool:
        return all(r.within_step for r in self.rows)

    @property
    def quantized_rows(self) -> tuple[WeightRow, ...]:
        return tuple(r for r in self.rows if r.step is not None)

    def shared(self) -> dict[str, tuple[str, ...]]:
        """HF parameters held in several subgraphs by one shared buffer."""
        return {
            p: s for p, s in self.hf_placements.items() if len(s) > 1 and self.hf_buffers[p] == 1
        }

    def copied(self) -> dict[str, tuple[str, ...]]:
        """HF parameters stored more than once (several buffers with their values)."""
        return {p: self.hf_placements[p] for p, n in self.hf_buffers.items() if n > 1}

    def unmatched_reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tflite_unmatched:
            counts[t.reason] = counts.get(t.reason, 0) + 1
        return counts

    def summary(self) -> str:
        quantized = self.quantized_rows
        ratio = max((r.step_ratio for r in quantized), default=0.0)
        parts = [
            f"matched {len(self.rows)} of {self.constants} constant tensors to "
            f"{len(self.hf_placements)} of {self.hf_total} HF parameters",
            f"max |Δ| {self.max_abs:.3g}",
        ]
        if quantized:
            parts.append(f"{len(quantized)} quantized, worst |Δ| = {ratio:.3f} step")
        parts.append(f"all within step: {'yes' if self.all_within_step else 'no'}")
        return "; ".join(parts)

    def table(self) -> pd.DataFrame:
        """One row per matched tensor, worst first (|Δ| / step, then max |Δ|)."""
        import pandas as pd

        rows = [
            {
                "subgraph": r.subgraph_name,
                "tensor": r.tensor,
                "hf": ", ".join(r.hf),
                "dtype": r.dtype,
                "quantization": r.quantization,
                "shape": "×".join(map(str, r.shape)),
                "transform": r.transform,
                "rule": r.rule,
                "max |Δ|": r.max_abs,
                "mean |Δ|": r.mean_abs,
                "step": r.step,
                "|Δ| / step": None if r.step is None else r.step_ratio,
                "within step": r.within_step,
                "buffer": r.buffer,
                "shared by": ", ".join(r.subgraphs),
                "name": r.name,
            }
            for r in self.rows
        ]
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        return frame.sort_values(["|Δ| / step", "max |Δ|"], ascending=False, na_position="last")

    def unmatched_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(TFLite constants with no HF parameter, HF parameters with no TFLite constant)."""
        import pandas as pd

        tflite = pd.DataFrame(
            [
                {
                    "subgraph": t.subgraph_name,
                    "tensor": t.tensor,
                    "dtype": t.dtype,
                    "shape": "×".join(map(str, t.shape)),
                    "reason": t.reason,
                    "name": t.name,
                }
                for t in self.tflite_unmatched
            ],
            columns=["subgraph", "tensor", "dtype", "shape", "reason", "name"],
        )
        hf = pd.DataFrame(
            [
                {"parameter": p.name, "shape": "×".join(map(str, p.shape)), "reason": p.reason}
                for p in self.hf_unmatched
            ],
            columns=["parameter", "shape", "reason"],
        )
        return tflite, hf

    def to_dict(self) -> dict[str, Any]:
        def clean(row: dict[str, Any]) -> dict[str, Any]:
            return {
                k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in row.items()
            }

        return {
            "model": self.model,
            "hf_folder": self.hf_folder,
            "summary": self.summary(),
            "constants": self.constants,
            "matched": len(self.rows),
            "hf_parameters": self.hf_total,
            "hf_matched": len(self.hf_placements),
            "max_abs": self.max_abs,
            "all_within_step": self.all_within_step,
            "seconds": round(self.seconds, 3),
            "rows": [clean(asdict(r)) for r in self.rows],
            "tflite_unmatched": [asdict(t) for t in self.tflite_unmatched],
            "hf_unmatched": [asdict(p) for p in self.hf_unmatched],
            "shared": self.shared(),
            "copied": self.copied(),
        }
