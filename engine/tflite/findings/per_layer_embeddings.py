"""Per-layer embeddings: a token lookup cut into one piece per layer, or such inputs."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from engine.tflite.analysis import PASS_THROUGH
from engine.tflite.findings.base import (
    Ctx,
    Digest,
    Finding,
    any_name,
    confidence_of,
    gathers,
    sorted_ids,
)
from engine.tflite.graph import ModelInfo, TensorInfo

KIND = "per_layer_embeddings"

_PLE_NAME = re.compile(r"per_layer|(?:^|[/._])ple(?:$|[/._])", re.IGNORECASE)
_MIN_VOCAB = 64  # rows of a token table looked up by runtime ids (not a small constant lookup)
_SLICERS = frozenset({"STRIDED_SLICE", "SLICE", "GATHER", "SPLIT", "SPLIT_V", "UNPACK"})


def detect(model: ModelInfo, ctxs: list[Ctx], digest: Digest | None) -> list[Finding]:
    """One finding per subgraph with per-layer embedding tables, inputs or names."""
    findings = []
    for ctx in ctxs:
        sg = ctx.sg
        # (P1) a large lookup table whose rows are cut into L per-layer pieces of width p.
        tables = []
        extra_gathers: dict[int, list[int]] = {}
        for op, table in gathers(ctx):
            vocab, width = table.shape[0], 1
            for dim in table.shape[1:]:
                width *= dim
            if vocab < _MIN_VOCAB:
                continue
            split: tuple[int, int, int] | None = None  # (op that splits, L, p)
            if len(table.shape) == 3:
                split = (op, table.shape[1], table.shape[2])
            for nxt in ctx.forward(sg.ops[op].outputs[0], PASS_THROUGH | {"MUL"}, 3):
                o = sg.ops[nxt]
                outs = [sg.tensors[t].shape for t in o.outputs if t >= 0]
                if o.opcode == "RESHAPE" and outs and len(outs[0]) >= 2:
                    n_l, p = outs[0][-2], outs[0][-1]
                    if n_l >= 2 and p >= 4 and n_l * p == width:
                        split = (nxt, n_l, p)
                elif o.opcode in ("SPLIT", "SPLIT_V", "UNPACK") and len(outs) >= 2:
                    split = (nxt, len(outs), width // len(outs))
                if split:
                    break
            if split and split[2] >= 4:
                tables.append((op, table, split))
        # (P1b) several same-shaped token tables whose lookups are stacked into one tensor.
        same_shape: dict[tuple[int, ...], dict[int, tuple[int, TensorInfo]]] = defaultdict(dict)
        for op, table in gathers(ctx):
            if len(table.shape) == 2 and table.shape[0] >= _MIN_VOCAB:
                same_shape[table.shape].setdefault(table.buffer, (op, table))
        for shape, by_buffer in same_shape.items():
            if len(by_buffer) < 2:
                continue
            joins = Counter(
                j
                for op, _ in by_buffer.values()
                for j in ctx.forward(sg.ops[op].outputs[0], PASS_THROUGH | {"MUL"}, 3)
                if sg.ops[j].opcode in ("PACK", "CONCATENATION")
            )
            join = next((j for j, n in joins.items() if n == len(by_buffer)), None)
            if join is not None:
                first, table = next(iter(by_buffer.values()))
                tables.append((first, table, (join, len(by_buffer), shape[1])))
                extra_gathers[first] = [op for op, _ in by_buffer.values()]
        # (P2) one tensor sliced per layer, each slice gating (MUL) its layer's activations.
        sliced: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for t in sg.tensors:
            if t.is_constant or len(t.shape) < 3:
                continue
            for c in ctx.gi.consumers[t.index]:
                o = sg.ops[c]
                data_pos = 1 if o.opcode == "SPLIT" else 0  # SPLIT takes (axis, value)
                if o.opcode not in _SLICERS or len(o.inputs) <= data_pos:
                    continue
                if o.inputs[data_pos] != t.index:
                    continue
                for y in o.outputs:
                    reach = ctx.forward(y, PASS_THROUGH, 3) if y >= 0 else {}
                    muls = [m for m in reach if sg.ops[m].opcode == "MUL"]
                    layers = {ctx.layer(m) for m in muls} - {None}
                    for layer in layers:
                        sliced[t.index][layer].append(c)
        per_layer_inputs = {t: by_layer for t, by_layer in sliced.items() if len(by_layer) >= 2}
        named = any_name(sg, _PLE_NAME)
        structure = bool(tables or per_layer_inputs)
        confidence = confidence_of(bool(named), structure)
        if confidence is None:
            continue
        ops: list[int] = []
        tensors: list[int] = []
        parts = []
        data: dict[str, Any] = {}
        for op, table, (split_op, n_l, p) in tables:
            ops += [op, split_op, *extra_gathers.get(op, [])]
            tensors.append(table.index)
            same_count = [c.sg.index for c in ctxs if len(c.groups.layers) == n_l]
            parts.append(
                f"lookup table {list(table.shape)} ({table.dtype}) is cut into {n_l} pieces of "
                f"{p} per token"
                + (f", as many as the layers of subgraph {same_count[0]}" if same_count else "")
            )
            data.setdefault("tables", []).append(
                {"op": op, "tensor": table.index, "vocab": table.shape[0], "layers": n_l, "dim": p}
            )
        for t, by_layer in per_layer_inputs.items():
            ops += [c for cs in by_layer.values() for c in cs]
            tensors.append(t)
            shape = sg.tensors[t].shape
            parts.append(
                f"input {list(shape)} is sliced per layer and each slice multiplies its layer's "
                f"activations (layers {min(by_layer)}–{max(by_layer)})"
            )
            data.setdefault("inputs", []).append(
                {"tensor": t, "layers": sorted(by_layer), "dim": shape[-1]}
            )
        if not structure:
            parts.append(f"{len(named)} tensor names mention per-layer embeddings")
            tensors = named[:50]
        elif named:
            parts.append("names say per_layer")
        title = (
            "Per-layer embeddings: a token lookup cut into one piece per layer"
            if tables
            else "Per-layer embedding inputs consumed layer by layer"
            if per_layer_inputs
            else "Per-layer embeddings named in the graph (no per-layer split found)"
        )
        findings.append(
            Finding(
                kind="per_layer_embeddings",
                title=title,
                detail="; ".join(parts) + ".",
                evidence_ops=sorted_ids(ops),
                evidence_tensors=sorted_ids(tensors),
                confidence=confidence,
                subgraph=sg.index,
                data=data,
            )
        )
    return findings
