"""Fields the existing detectors already find: AltUp streams, LAuReL rank, per-layer embedding
width (their findings' data, with their evidence)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from engine.tflite.findings import altup, laurel, per_layer_embeddings
from engine.tflite.findings.base import Finding
from engine.tflite.recovered.base import FieldReader
from engine.tflite.recovered.config import Recovered


class DetectedFields(FieldReader):
    def _detected(self) -> None:
        model, ctx = self.model, [self.ctx]
        found = _one(altup.detect(model, ctx, None))
        if found and found.data.get("streams"):
            self._from(found, "altup_num_inputs", found.data["streams"], found.title)
        else:
            self.out["altup_num_inputs"] = Recovered.absent(
                f"no AltUp streams in {self.where}" + (f" ({found.title})" if found else "")
            )
        found = _one(laurel.detect(model, ctx, None))
        ranks = found.data.get("ranks") if found else None
        if found and ranks and len(ranks) == 1:
            self._from(found, "laurel_rank", ranks[0], found.title)
        elif found and ranks:
            self._unknown(("laurel_rank",), f"several ranks: {ranks}")
        else:
            self.out["laurel_rank"] = Recovered.absent(f"no low-rank residual in {self.where}")
        found = _one(per_layer_embeddings.detect(model, ctx, None))
        dims = Counter(
            d["dim"] for d in (found.data.get("tables", []) if found else []) if d.get("dim")
        )
        if found and len(dims) == 1:
            self._from(found, "hidden_size_per_layer_input", next(iter(dims)), found.title)
        elif found:
            self._unknown(("hidden_size_per_layer_input",), found.title)
        else:
            self.out["hidden_size_per_layer_input"] = Recovered.absent(
                f"no per-layer embedding table in {self.where}"
            )

    def _from(self, f: Finding, name: str, value: Any, title: str) -> None:
        how = f"{f.kind} finding ({f.confidence} confidence): {title}"
        self._set(name, value, f.evidence_ops, f.evidence_tensors, how)


def _one(findings: list[Finding]) -> Finding | None:
    return findings[0] if findings else None
