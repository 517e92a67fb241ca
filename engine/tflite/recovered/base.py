"""What the field readers of `recover_config` share: the subgraph, its signature, its attention
blocks, and how a field is set or declared unknown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.tflite.findings.base import Ctx, Digest, sorted_ids
from engine.tflite.findings.kv_attention import KVAttention
from engine.tflite.graph import ModelInfo, SignatureInfo
from engine.tflite.recovered.config import Recovered

# (subgraph, tensor) → the constant's values (e.g. `TFLiteReader.tensor_array`).
Values = Callable[[int, int], np.ndarray]


class FieldReader:
    """Reads fields of one subgraph into `out` (field name → `Recovered`)."""

    def __init__(
        self,
        model: ModelInfo,
        ctx: Ctx,
        sig: SignatureInfo | None,
        caches: list[KVAttention],
        digest: Digest | None,
        values: Values | None,
    ) -> None:
        self.model, self.ctx, self.sig = model, ctx, sig
        self.caches = caches  # one per K cache input; `blocks`: those an attention reads
        self.blocks = [a for a in caches if a.scores is not None]
        self.digest, self.values = digest, values
        self.where = f"signature '{sig.key}'" if sig else f"subgraph {ctx.sg.index}"
        self.out: dict[str, Recovered] = {}

    def _set(self, name: str, value: Any, ops: Any, tensors: Any, how: str) -> None:
        self.out[name] = Recovered(value, sorted_ids(ops), sorted_ids(tensors), how)

    def _unknown(self, names: tuple[str, ...], why: str) -> None:
        for name in names:
            self.out.setdefault(name, Recovered.unknown(why))
