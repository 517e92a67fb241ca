"""The graph model every TFLite reader returns and every analysis consumes (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import SubnetScopeError


class TFLiteError(SubnetScopeError):
    """A file that is not a readable TFLite model or bundle; the message is one sentence."""


def shown(text: str, limit: int = 60) -> str:
    """A name as a message quotes it: names come from the file (a converter joins a dozen op names
    into one tensor's; a crafted one may hold a megabyte), so long ones are cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Quantization:
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    min: tuple[float, ...] = ()
    max: tuple[float, ...] = ()

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    dtype: str  # TFLite TensorType name in lower case: "float32", "int8", "int4", "float16", ...
    buffer: int  # index into the model's buffers (0 = no data)
    buffer_bytes: int  # bytes of constant data (0 for activations)
    is_variable: bool = False
    quantization: Quantization | None = None
    sparsity: dict[str, Any] | None = None

    @property
    def is_constant(self) -> bool:
        return self.buffer_bytes > 0

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(d, 0)
        return n


@dataclass(frozen=True)
class OpInfo:
    index: int
    opcode: str  # builtin operator name ("FULLY_CONNECTED") or the custom code
    custom: bool
    version: int
    inputs: tuple[int, ...]  # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubgraphInfo:
    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]


@dataclass(frozen=True)
class SignatureInfo:
    key: str
    subgraph: int
    inputs: dict[str, int]  # signature name → tensor index
    outputs: dict[str, int]


@dataclass(frozen=True)
class ModelInfo:
    """What a model is made of: metadata only; tensor data is read on request by the reader."""

    name: str  # file name, or "file.task:TF_LITE_PREFILL_DECODE" for a bundle section
    version: int
    description: str
    metadata: dict[str, int]  # metadata entry name → size in bytes of its buffer
    signatures: tuple[SignatureInfo, ...]
    subgraphs: tuple[SubgraphInfo, ...]
    file_bytes: int
