"""What every detector shares: `Finding`, per-subgraph contexts, the digest, the table."""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import pandas as pd

from engine.tflite.analysis import GraphIndex, LayerGroups, layer_groups
from engine.tflite.graph import ModelInfo, SubgraphInfo, TensorInfo

Confidence = Literal["high", "medium", "low"]
# (model, subgraph, tensor) → a digest of the tensor's bytes; lets two different buffers count as
# the same weights (the reader computes it; findings never read tensor data themselves).
Digest = Callable[[ModelInfo, int, int], str]


@dataclass(frozen=True)
class Finding:
    kind: str  # "ffn_widths", "altup", "laurel", "per_layer_embeddings", "tied_embedding", ...
    title: str
    detail: str
    evidence_ops: tuple[int, ...]  # op indices in `subgraph`
    evidence_tensors: tuple[int, ...]  # tensor indices in `subgraph`
    confidence: Confidence
    subgraph: int
    data: dict[str, Any] = field(default_factory=dict)


def confidence_of(names: bool, structure: bool) -> Confidence | None:
    """High when names and structure agree, medium on structure, low on names, else nothing."""
    if structure:
        return "high" if names else "medium"
    return "low" if names else None


def sorted_ids(values: Iterable[int]) -> tuple[int, ...]:
    """Distinct op or tensor indices, ascending, without the absent ones (None, -1)."""
    return tuple(sorted({v for v in values if v is not None and v >= 0}))


@dataclass(frozen=True)
class MatMul:
    """A FULLY_CONNECTED or BATCH_MATMUL with a constant weight: x[..., d_in] → y[..., d_out]."""

    op: int
    weight: int  # the constant tensor (behind a DEQUANTIZE when there is one)
    x: int
    y: int
    d_in: int
    d_out: int


def matmuls(subgraph: SubgraphInfo, index: GraphIndex | None = None) -> list[MatMul]:
    """Every matmul of `subgraph` whose weight is a constant, with its in/out widths."""
    gi = index or GraphIndex.build(subgraph)
    out = []
    for op in subgraph.ops:
        if op.opcode not in ("FULLY_CONNECTED", "BATCH_MATMUL") or len(op.inputs) < 2:
            continue
        w = gi.constant_source(op.inputs[1])
        if w is None or len(w.shape) < 2 or not op.outputs:
            continue
        if op.opcode == "FULLY_CONNECTED":  # weights are [out, in]
            d_out, d_in = w.shape[0], 1
            for dim in w.shape[1:]:
                d_in *= dim
        else:  # rhs is [..., K, N], or [..., N, K] with adj_y
            d_in, d_out = w.shape[-2], w.shape[-1]
            if op.options.get("adj_y") or op.options.get("adjoint_rhs"):
                d_in, d_out = d_out, d_in
        out.append(MatMul(op.index, w.index, op.inputs[0], op.outputs[0], d_in, d_out))
    return out


@dataclass(frozen=True)
class Ctx:
    """One subgraph as every detector reads it: its index, layer groups and constant matmuls."""

    sg: SubgraphInfo
    gi: GraphIndex
    groups: LayerGroups
    mms: tuple[MatMul, ...]

    @cached_property
    def by_op(self) -> dict[int, MatMul]:
        return {m.op: m for m in self.mms}

    def layer(self, op: int) -> int | None:
        return self.groups.op_layer[op]

    def names(self, op: int) -> str:
        """The names an op is known by: its outputs' and its constant inputs' names."""
        o = self.sg.ops[op]
        ts = [t for t in (*o.outputs, *o.inputs) if t >= 0]
        return " ".join(
            self.sg.tensors[t].name
            for t in ts
            if t in o.outputs or self.gi.constant_source(t) is not None
        )

    def forward(self, tensor: int, through: frozenset[str] | None, max_ops: int) -> dict[int, int]:
        """Ops downstream of `tensor` within `max_ops` steps → depth; only ops in `through`
        (all when None) pass the flow on, but every op reached is listed."""
        seen: dict[int, int] = {}
        queue = deque([(tensor, 0)])
        while queue:
            t, depth = queue.popleft()
            if depth >= max_ops:
                continue
            for c in self.gi.consumers[t]:
                if c in seen:
                    continue
                seen[c] = depth + 1
                op = self.sg.ops[c]
                if through is None or op.opcode in through:
                    queue.extend((y, depth + 1) for y in op.outputs if y >= 0)
        return seen

    def backward(self, tensor: int, through: frozenset[str], max_ops: int) -> set[int]:
        """Non-constant tensors upstream of `tensor` (itself included) through ops in `through`."""
        seen = {tensor}
        queue = deque([(tensor, 0)])
        while queue:
            t, depth = queue.popleft()
            op = self.gi.producer_op(t)
            if op is None or depth >= max_ops or op.opcode not in through:
                continue
            for x in op.inputs:
                if x >= 0 and x not in seen and not self.sg.tensors[x].is_constant:
                    seen.add(x)
                    queue.append((x, depth + 1))
        return seen


def contexts(model: ModelInfo) -> list[Ctx]:
    """One `Ctx` per subgraph of `model`, built once and shared by all detectors."""
    out = []
    for sg in model.subgraphs:
        gi = GraphIndex.build(sg)
        out.append(Ctx(sg, gi, layer_groups(sg, gi), tuple(matmuls(sg, gi))))
    return out


def any_name(sg: SubgraphInfo, pattern: re.Pattern[str]) -> list[int]:
    """Indices of the tensors whose names match `pattern`."""
    return [t.index for t in sg.tensors if pattern.search(t.name)]


def gathers(ctx: Ctx) -> list[tuple[int, TensorInfo]]:
    """(op, table) for GATHER / EMBEDDING_LOOKUP ops reading rows of a constant 2-D+ table at
    indices computed at run time (token ids, not a constant selection)."""
    out = []
    for op in ctx.sg.ops:
        pos = {"GATHER": (0, 1), "EMBEDDING_LOOKUP": (1, 0)}.get(op.opcode)
        if pos is None or len(op.inputs) < 2 or op.options.get("axis", 0) != 0:
            continue
        table = ctx.gi.constant_source(op.inputs[pos[0]])
        ids = op.inputs[pos[1]]
        if table is None or len(table.shape) < 2 or ids < 0 or ctx.sg.tensors[ids].is_constant:
            continue
        out.append((op.index, table))
    return out


# What every detector module provides as `detect`: the model, its per-subgraph contexts and
# the optional digest in, that detector's findings out.
Detector = Callable[[ModelInfo, list[Ctx], Digest | None], list[Finding]]


def digest_from_readers(readers: Mapping[str, Any]) -> Digest:
    """A `Digest` over open readers keyed by `ModelInfo.name` (anything with
    `tensor_bytes(subgraph, tensor)`, e.g. `TFLiteReader`): BLAKE2b of the tensor's bytes, each
    tensor hashed at most once. Only tensors whose shapes already match are ever asked for."""
    cache: dict[tuple[str, int, int], str] = {}

    def digest(model: ModelInfo, subgraph: int, tensor: int) -> str:
        key = (model.name, subgraph, tensor)
        if key not in cache:
            data = readers[model.name].tensor_bytes(subgraph, tensor)
            cache[key] = hashlib.blake2b(data, digest_size=16).hexdigest()
        return cache[key]

    return digest


def findings_table(findings: Iterable[Finding]) -> pd.DataFrame:
    """One row per finding: subgraph, kind, confidence, title, detail, ops, tensors."""
    rows = [
        {
            "subgraph": f.subgraph,
            "kind": f.kind,
            "confidence": f.confidence,
            "title": f.title,
            "detail": f.detail,
            "ops": len(f.evidence_ops),
            "tensors": len(f.evidence_tensors),
        }
        for f in findings
    ]
    columns = ["subgraph", "kind", "confidence", "title", "detail", "ops", "tensors"]
    return pd.DataFrame(rows, columns=columns)
