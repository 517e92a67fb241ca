"""A PEFT LoRA adapter merged onto its base on the fly: W + scaling·B@A, one row block at a time.

The merged block is rounded to the base tensor's stored dtype, as `merge_and_unload()` followed by
saving in that dtype would store it — so on a bf16 base an update below bf16 resolution vanishes,
which is exactly the storage effect the bf16-visible counts measure.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import SubnetScopeError
from engine.sparsity.reader import TensorInfo, TensorSpec, read_header, read_rows
from engine.sparsity.sources import ADAPTER_CONFIG, WeightSource

_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B)\.weight$")
_LORA_EMBED_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_embedding_A|lora_embedding_B)$")


@dataclass
class _Update:
    """One targeted weight's low-rank update: delta = scaling · B @ A, maybe transposed."""

    a: torch.Tensor  # (r, in)
    b: torch.Tensor  # (out, r)
    scaling: float
    transposed: bool  # the stored weight is (in, out): GPT-2 Conv1D, or an embedding

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of the update in the stored weight's orientation."""
        if self.transposed:
            return (self.b @ self.a[:, start:stop]).T.mul_(self.scaling)
        return (self.b[start:stop] @ self.a).mul_(self.scaling)


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's alpha_pattern/rank_pattern lookup: a key matches a module name suffix as a regex."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def _match_base_name(name: str, base_names: set[str]) -> str | None:
    """The base tensor an adapter key names, allowing one side to carry an extra model prefix
    (a GPT-2 hub checkpoint stores `h.0...` where the PEFT model says `transformer.h.0...`)."""
    if name in base_names:
        return name
    hits = [b for b in base_names if b.endswith("." + name) or name.endswith("." + b)]
    return hits[0] if len(hits) == 1 else None


@dataclass
class LoraMergedSource:
    """Its base's tensors, with the adapter's updates added to the targeted ones."""

    label: str
    base: WeightSource
    updates: dict[str, _Update]
    replaced: dict[str, TensorInfo]  # modules_to_save: whole tensors stored in the adapter
    config_dir: Path | None = None
    adapter_dir: Path | None = None
    _specs: dict[str, TensorSpec] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._specs = self.base.specs() | dict(self.replaced)
        if self.config_dir is None:
            self.config_dir = self.base.config_dir

    @classmethod
    def open(
        cls,
        folder: Path,
        *,
        base: str | Path | WeightSource | None = None,
        label: str | None = None,
        open_base: Callable[[str | Path | WeightSource], WeightSource],
    ) -> LoraMergedSource:
        try:
            config = json.loads((folder / ADAPTER_CONFIG).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SubnetScopeError(f"cannot read the adapter config in '{folder}'") from exc
        peft_type = config.get("peft_type", "LORA")
        if peft_type != "LORA":
            raise SubnetScopeError(
                f"'{folder}' is a {peft_type} adapter; the sparsity diff merges LoRA adapters only"
            )
        if config.get("use_dora"):
            raise SubnetScopeError(f"'{folder}' is a DoRA adapter, which the diff cannot merge")
        base = base if base is not None else config.get("base_model_name_or_path")
        if not base:
            raise SubnetScopeError(f"'{folder}' names no base model; give the base explicitly")
        base_source = open_base(base)  # engine.sparsity.resolve.open_source
        if isinstance(base_source, LoraMergedSource):
            raise SubnetScopeError(f"the base of adapter '{folder}' is itself an adapter")
        weights = folder / "adapter_model.safetensors"
        if not weights.is_file():
            raise SubnetScopeError(f"'{folder}' has no adapter_model.safetensors")
        infos, _ = read_header(weights)
        return cls._build(folder, label or str(folder), config, base_source, infos)

    @classmethod
    def _build(
        cls,
        folder: Path,
        label: str,
        config: dict[str, Any],
        base: WeightSource,
        infos: dict[str, TensorInfo],
    ) -> LoraMergedSource:
        base_specs = base.specs()
        base_names = set(base_specs)
        parts: dict[str, dict[str, torch.Tensor]] = {}
        replaced: dict[str, TensorInfo] = {}
        embeddings: set[str] = set()
        unmatched: list[str] = []
        for key, info in infos.items():
            short = key.removeprefix(_PREFIX)
            found = _LORA_KEY.match(short) or _LORA_EMBED_KEY.match(short)
            if found:
                tensor = read_rows(info, 0, info.rows).reshape(info.shape).float()
                module = found["module"]
                parts.setdefault(module, {})[found["part"][-1]] = tensor  # "A" or "B"
                if "embedding" in found["part"]:
                    embeddings.add(module)
            elif "lora_" in short or "magnitude" in short:
                raise SubnetScopeError(
                    f"'{folder}' holds '{key}', a kind of adapter tensor the diff cannot merge"
                )
            elif (name := _match_base_name(short, base_names)) is not None:
                replaced[name] = info  # modules_to_save: the whole tuned tensor
            else:
                unmatched.append(short)
        updates: dict[str, _Update] = {}
        for module, ab in parts.items():
            name = _match_base_name(f"{module}.weight", base_names)
            if name is None or set(ab) != {"A", "B"}:
                unmatched.append(module)
                continue
            spec = base_specs[name]
            updates[name] = cls._update(config, module, ab, spec, module in embeddings)
        if unmatched:
            raise SubnetScopeError(
                f"adapter '{folder}' targets {len(unmatched)} tensor(s) its base '{base.label}' "
                f"does not have: {', '.join(unmatched[:3])}"
            )
        return cls(label, base, updates, replaced, adapter_dir=folder)

    @staticmethod
    def _update(
        config: dict[str, Any],
        module: str,
        ab: dict[str, torch.Tensor],
        spec: TensorSpec,
        embedding: bool,
    ) -> _Update:
        a, b = ab["A"], ab["B"]
        r = a.shape[0]
        alpha = _pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha"))
        alpha = r if alpha is None else alpha
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        merged_shape = (b.shape[0], a.shape[1])
        if len(spec.shape) != 2 or spec.shape not in (merged_shape, merged_shape[::-1]):
            raise SubnetScopeError(
                f"LoRA update of '{spec.name}' has shape {merged_shape}, "
                f"which does not fit the base weight {spec.shape}"
            )
        if spec.shape[0] == spec.shape[1]:
            # Square: the shape cannot tell. Embeddings and Conv1D (fan_in_fan_out) are (in, out).
            transposed = bool(config.get("fan_in_fan_out")) or embedding
        else:
            transposed = spec.shape != merged_shape
        return _Update(a, b, float(scaling), transposed)

    def specs(self) -> dict[str, TensorSpec]:
        return dict(self._specs)

    def read(
        self, name: str, start: int, stop: int, buffer: np.ndarray | None = None
    ) -> torch.Tensor:
        if name in self.replaced:
            return read_rows(self.replaced[name], start, stop, buffer)
        rows = self.base.read(name, start, stop, buffer)
        update = self.updates.get(name)
        if update is None:
            return rows
        # Out of place: `rows` may be the base's own tensor (an in-memory source).
        return (rows.to(torch.float32) + update.rows(start, stop)).to(rows.dtype)

    def fingerprint(self) -> dict[str, Any] | None:
        from engine.cache import fingerprint_path

        base = self.base.fingerprint()
        if base is None or self.adapter_dir is None:
            return None
        return {"type": "lora", "base": base, "adapter": fingerprint_path(self.adapter_dir)}
