"""Architecture findings read off a TFLite graph: each claim carries the ops and tensors behind it.

The techniques are the ones the Gemma-3n reverse-engineering seed looks for (seed 000, "Reverse
Engineering Gemma 3n"): MatFormer FFN widths (arXiv:2310.07707), AltUp streams
(arXiv:2301.13310), LAuReL low-rank residuals (arXiv:2411.07501), per-layer embeddings, tied
embedding / LM head, and local vs global attention. Confidence: "high" when names and graph
structure agree, "medium" on structure alone, "low" on names alone; nothing is reported without
evidence in the graph.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import pandas as pd

from engine.tflite.analysis import PASS_THROUGH, GraphIndex, LayerGroups, layer_groups
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


def _confidence(names: bool, structure: bool) -> Confidence | None:
    if structure:
        return "high" if names else "medium"
    return "low" if names else None


def _sorted(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted({v for v in values if v is not None and v >= 0}))


# ---------------------------------------------------------------------------------------------
# Per-subgraph context: the index, the layers and the matmuls with constant weights
# ---------------------------------------------------------------------------------------------


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
class _Ctx:
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


def _contexts(model: ModelInfo) -> list[_Ctx]:
    out = []
    for sg in model.subgraphs:
        gi = GraphIndex.build(sg)
        out.append(_Ctx(sg, gi, layer_groups(sg, gi), tuple(matmuls(sg, gi))))
    return out


def _any_name(sg: SubgraphInfo, pattern: re.Pattern[str]) -> list[int]:
    return [t.index for t in sg.tensors if pattern.search(t.name)]


def _d_model(ctx: _Ctx) -> int | None:
    widths = Counter(m.d_in for m in ctx.mms)
    return widths.most_common(1)[0][0] if widths else None


# ---------------------------------------------------------------------------------------------
# FFN widths (MatFormer)
# ---------------------------------------------------------------------------------------------

_MLP_NAME = re.compile(
    r"mlp|ffn|ffw|feed_?forward|gating_einsum|gate_proj|up_proj|down_proj", re.IGNORECASE
)
# What may sit between an MLP's up/gate projections and its down projection: activations,
# the gate product, activation-sparsity statistics (Gemma-3n's top-k), requantization.
_MLP_THROUGH = PASS_THROUGH | {
    "MUL",
    "ADD",
    "SUB",
    "DIV",
    "GELU",
    "LOGISTIC",
    "TANH",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "HARD_SWISH",
    "LEAKY_RELU",
    "PRELU",
    "POW",
    "SQUARE",
    "SQRT",
    "RSQRT",
    "MEAN",
    "SUM",
    "SQUARED_DIFFERENCE",
    "MAXIMUM",
    "MINIMUM",
    "EXP",
    "NEG",
    "ABS",
    "SELECT",
    "SELECT_V2",
    "GREATER",
    "GREATER_EQUAL",
}


@dataclass(frozen=True)
class _Mlp:
    down: MatMul
    ups: tuple[MatMul, ...]

    @property
    def width(self) -> int:
        return self.down.d_in

    @property
    def ops(self) -> tuple[int, ...]:
        return (*(u.op for u in self.ups), self.down.op)


def _mlps(ctx: _Ctx) -> list[_Mlp]:
    """Structural MLPs: up/gate projections d→f (f > d) whose outputs reach a down projection
    f→d within six elementwise ops, in the same layer when layers are known."""
    by_op = ctx.by_op
    ups_of: dict[int, list[MatMul]] = defaultdict(list)
    for up in ctx.mms:
        if up.d_out <= up.d_in:
            continue
        for op in ctx.forward(up.y, _MLP_THROUGH, 6):
            down = by_op.get(op)
            if down is None or down.d_in != up.d_out or down.d_out != up.d_in:
                continue
            la, lb = ctx.layer(up.op), ctx.layer(down.op)
            if la is None or lb is None or la == lb:
                ups_of[down.op].append(up)
    return [_Mlp(by_op[d], tuple(ups)) for d, ups in sorted(ups_of.items())]


def _ffn_widths(model: ModelInfo, ctxs: list[_Ctx], digest: Digest | None) -> list[Finding]:
    findings = []
    for ctx in ctxs:
        mlps = _mlps(ctx)
        structure = len(mlps) >= 2
        if structure:
            numbered = all(ctx.layer(m.down.op) is not None for m in mlps)
            per_layer: dict[int, list[_Mlp]] = defaultdict(list)
            for i, m in enumerate(mlps):
                per_layer[ctx.layer(m.down.op) if numbered else i].append(m)
            widths = {layer: max(m.width for m in ms) for layer, ms in sorted(per_layer.items())}
            ops = [op for m in mlps for op in m.ops]
            weights = [mm.weight for m in mlps for mm in (*m.ups, m.down)]
            names = all(_MLP_NAME.search(ctx.names(op)) for op in ops)
            d = Counter(m.down.d_out for m in mlps).most_common(1)[0][0]
            how = "layer names" if numbered else "the order the MLPs run in (no layer names)"
        else:
            # Names alone: matmuls named like an MLP, grouped by layer, width = larger dimension.
            named = [m for m in ctx.mms if _MLP_NAME.search(ctx.names(m.op))]
            per_named: dict[int, list[MatMul]] = defaultdict(list)
            for m in named:
                if ctx.layer(m.op) is not None:
                    per_named[ctx.layer(m.op)].append(m)
            if len(per_named) < 2:
                continue
            widths = {
                layer: max(max(m.d_in, m.d_out) for m in ms)
                for layer, ms in sorted(per_named.items())
            }
            ops = [m.op for ms in per_named.values() for m in ms]
            weights = [m.weight for ms in per_named.values() for m in ms]
            names, d, how = True, None, "layer names"
        confidence = _confidence(names, structure)
        if confidence is None:
            continue
        distinct = sorted(set(widths.values()))
        listing = ", ".join(f"{layer}:{w}" for layer, w in widths.items())
        if len(distinct) > 1:
            title = "FFN widths differ across layers (MatFormer-style): " + ", ".join(
                map(str, distinct)
            )
            why = (
                "Layers with different MLP widths are what a MatFormer mix-n-match sub-model "
                "looks like."
            )
        else:
            title = f"FFN width {distinct[0]} in all {len(widths)} layers"
            why = (
                "Equal widths neither show nor rule out MatFormer nesting: nested sub-models live "
                "in the weights, not in the graph."
            )
        found = (
            "up/gate projections that feed a down projection through elementwise ops"
            if structure
            else "matmuls whose names say MLP (no up→down wiring found)"
        )
        findings.append(
            Finding(
                kind="ffn_widths",
                title=title,
                detail=(
                    f"MLP hidden width per layer ({how}; {found}): {listing}"
                    + (f"; model width {d}" if d else "")
                    + f". {why}"
                ),
                evidence_ops=_sorted(ops),
                evidence_tensors=_sorted(weights),
                confidence=confidence,
                subgraph=ctx.sg.index,
                data={"widths": widths, "d_model": d, "differ": len(distinct) > 1},
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------
# AltUp: parallel residual streams, predicted and corrected
# ---------------------------------------------------------------------------------------------

_ALTUP_NAME = re.compile(r"alt_?up", re.IGNORECASE)


def _altup(model: ModelInfo, ctxs: list[_Ctx], digest: Digest | None) -> list[Finding]:
    findings = []
    for ctx in ctxs:
        named = _any_name(ctx.sg, _ALTUP_NAME)
        d = Counter(m.down.d_out for m in _mlps(ctx)).most_common(1)
        d_model = d[0][0] if d else _d_model(ctx)
        by_op = ctx.by_op
        # A router d→k (2 ≤ k ≤ 16) whose output, within three ops, feeds a coefficient matmul
        # k→k² (predict: a k×k stream-mixing matrix) or k→k (correct: one scale per stream).
        pairs: dict[int, list[tuple[MatMul, MatMul]]] = defaultdict(list)
        for router in ctx.mms:
            k = router.d_out
            if d_model is None or router.d_in != d_model or not 2 <= k <= 16:
                continue
            for op in ctx.forward(router.y, None, 3):
                coef = by_op.get(op)
                if coef is not None and coef.d_in == k and coef.d_out in (k, k * k):
                    pairs[k].append((router, coef))
        k, found = max(pairs.items(), key=lambda kv: len(kv[1]), default=(0, []))
        stacked = [
            t.index
            for t in ctx.sg.tensors
            if k
            and not t.is_constant
            and len(t.shape) >= 2
            and t.shape[0] == k
            and t.shape[-1] == d_model
            and ctx.gi.producer[t.index] >= 0
        ]
        s_coef, s_stack = len(found) >= 2, len(stacked) >= 2
        structure = s_coef and s_stack
        if structure:
            confidence: Confidence | None = "high" if named else "medium"
        elif named and (s_coef or s_stack):
            confidence = "medium"
        else:
            confidence = _confidence(bool(named), False)
        if confidence is None:
            continue
        predict = sorted({c.op for _, c in found if c.d_out == k * k})
        correct = sorted({c.op for _, c in found if c.d_out == k})
        ops = [op for r, c in found for op in (r.op, c.op)]
        layers = sorted({ctx.layer(op) for op in ops if ctx.layer(op) is not None})
        if structure and predict and correct:
            title = f"AltUp: {k} parallel residual streams, predicted and corrected"
        elif structure:
            title = f"AltUp-like: {k} parallel residual streams mixed by learned coefficients"
        elif s_coef or s_stack:
            title = "AltUp named in the graph, with part of its structure"
        else:
            title = "AltUp named in the graph (no stream structure found)"
        parts = []
        if stacked:
            shape = ctx.sg.tensors[stacked[0]].shape
            parts.append(
                f"{len(stacked)} activations carry a leading stream dimension of {k} "
                f"(e.g. {list(shape)}, model width {d_model})"
            )
        if found:
            parts.append(
                f"{len(predict)} router→k² prediction-coefficient matmuls and {len(correct)} "
                f"router→k correction-coefficient matmuls"
                + (f" in layers {layers[0]}–{layers[-1]}" if layers else "")
            )
        if named:
            parts.append(f"{len(named)} tensor names mention AltUp")
        findings.append(
            Finding(
                kind="altup",
                title=title,
                detail="; ".join(parts) + ".",
                evidence_ops=_sorted(ops),
                evidence_tensors=_sorted(stacked or named[:50]),
                confidence=confidence,
                subgraph=ctx.sg.index,
                data={
                    "streams": k or None,
                    "d_model": d_model,
                    "layers": layers,
                    "predict_ops": predict,
                    "correct_ops": correct,
                    "stacked_tensors": len(stacked),
                    "named_tensors": len(named),
                },
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------
# LAuReL: low-rank residual side branches
# ---------------------------------------------------------------------------------------------

_LAUREL_NAME = re.compile(r"laurel", re.IGNORECASE)
# RMSNorm/LayerNorm arithmetic: what may sit between a branch and the ADD that merges it.
_NORM_THROUGH = PASS_THROUGH | {
    "MUL",
    "ADD",
    "SUB",
    "DIV",
    "RSQRT",
    "SQRT",
    "MEAN",
    "SQUARE",
    "SQUARED_DIFFERENCE",
    "POW",
}


def _laurel(
    model: ModelInfo, ctxs: list[_Ctx], digest: Digest | None, *, max_ratio: float = 0.25
) -> list[Finding]:
    findings = []
    for ctx in ctxs:
        by_op = ctx.by_op
        blocks: list[tuple[MatMul, MatMul, int]] = []
        for left in ctx.mms:
            r, d = left.d_out, left.d_in
            if r > max_ratio * d:
                continue
            for op in ctx.forward(left.y, PASS_THROUGH, 3):
                right = by_op.get(op)
                if right is None or right.d_in != r or right.d_out != d:
                    continue
                # Added back: an ADD after the branch (and its norm) whose other operand is the
                # branch input or what it was normalized from, i.e. the residual stream.
                stream = ctx.backward(left.x, _NORM_THROUGH, 6)
                for add in ctx.forward(right.y, _NORM_THROUGH, 8):
                    o = ctx.sg.ops[add]
                    if o.opcode == "ADD" and any(t in stream for t in o.inputs):
                        blocks.append((left, right, add))
                        break
        named = _any_name(ctx.sg, _LAUREL_NAME)
        structure = bool(blocks)
        names = structure and all(
            _LAUREL_NAME.search(ctx.names(left.op) + " " + ctx.names(right.op))
            for left, right, _ in blocks
        )
        confidence = _confidence(names if structure else bool(named), structure)
        if confidence is None:
            continue
        ops = [op for left, right, add in blocks for op in (left.op, right.op, add)]
        layers = sorted({ctx.layer(b[0].op) for b in blocks if ctx.layer(b[0].op) is not None})
        ranks = sorted({b[0].d_out for b in blocks})
        dims = sorted({b[0].d_in for b in blocks})
        if structure:
            title = (
                f"LAuReL-style low-rank residual branches: rank {'/'.join(map(str, ranks))} "
                f"in {len(blocks)} places"
            )
            detail = (
                f"{len(blocks)} pairs of matmuls d→r→d (d={'/'.join(map(str, dims))}, "
                f"r={'/'.join(map(str, ranks))}) wired back-to-back, whose output is added to "
                "the stream the first one reads"
                + (f"; layers {', '.join(map(str, layers))}" if layers else "")
                + ("; names say laurel" if names else "")
                + "."
            )
        else:
            title = "LAuReL named in the graph (no low-rank residual branch found)"
            detail = f"{len(named)} tensor names mention laurel; no d→r→d matmul pair was found."
        findings.append(
            Finding(
                kind="laurel",
                title=title,
                detail=detail,
                evidence_ops=_sorted(ops),
                evidence_tensors=_sorted(
                    [t for b in blocks for t in (b[0].weight, b[1].weight)] or named[:50]
                ),
                confidence=confidence,
                subgraph=ctx.sg.index,
                data={
                    "ranks": ranks,
                    "d_model": dims,
                    "layers": layers,
                    "pairs": [(b[0].op, b[1].op) for b in blocks],
                },
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------
# Per-layer embeddings
# ---------------------------------------------------------------------------------------------

_PLE_NAME = re.compile(r"per_layer|(?:^|[/._])ple(?:$|[/._])", re.IGNORECASE)
_MIN_VOCAB = 64  # rows of a token table looked up by runtime ids (not a small constant lookup)
_SLICERS = frozenset({"STRIDED_SLICE", "SLICE", "GATHER", "SPLIT", "SPLIT_V", "UNPACK"})


def _gathers(ctx: _Ctx) -> list[tuple[int, TensorInfo]]:
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


def _per_layer_embeddings(
    model: ModelInfo, ctxs: list[_Ctx], digest: Digest | None
) -> list[Finding]:
    findings = []
    for ctx in ctxs:
        sg = ctx.sg
        # (P1) a large lookup table whose rows are cut into L per-layer pieces of width p.
        tables = []
        extra_gathers: dict[int, list[int]] = {}
        for op, table in _gathers(ctx):
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
        for op, table in _gathers(ctx):
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
        named = _any_name(sg, _PLE_NAME)
        structure = bool(tables or per_layer_inputs)
        confidence = _confidence(bool(named), structure)
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
                evidence_ops=_sorted(ops),
                evidence_tensors=_sorted(tensors),
                confidence=confidence,
                subgraph=sg.index,
                data=data,
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------
# Tied embedding and LM head
# ---------------------------------------------------------------------------------------------


def _tied_pairs(
    head_model: ModelInfo,
    head_ctxs: list[_Ctx],
    table_model: ModelInfo,
    table_ctxs: list[_Ctx],
    digest: Digest | None,
) -> list[Finding]:
    """Matmuls to vocabulary size in `head_model` that read the weights of an embedding lookup in
    `table_model`: the same buffer (or tensor) of one model, or, when `digest` is given, two
    buffers with equal digests (the only way across two models, e.g. two .task sections)."""
    one_model = head_model is table_model
    tables = [(ctx, op, table) for ctx in table_ctxs for op, table in _gathers(ctx)]
    findings = []
    seen: set[tuple[int, int]] = set()
    for hctx in head_ctxs:
        for head in hctx.mms:
            w = hctx.sg.tensors[head.weight]
            for ectx, op, table in tables:
                vocab = table.shape[0]
                if head.d_out != vocab or w.shape != table.shape or w.dtype != table.dtype:
                    continue
                same = one_model and (
                    (w.buffer == table.buffer and w.buffer > 0)
                    or (ectx is hctx and w.index == table.index)
                )
                how = f"the same buffer ({w.buffer})"
                if not same and digest is not None:
                    same = digest(head_model, hctx.sg.index, w.index) == digest(
                        table_model, ectx.sg.index, table.index
                    )
                    how = "bytes identical to those"
                if not same or (head.op, id(table)) in seen:
                    continue
                seen.add((head.op, id(table)))
                local = ectx is hctx
                where = (
                    "in the same subgraph"
                    if local
                    else f"in subgraph {ectx.sg.index} ({ectx.sg.name})"
                    if one_model
                    else f"in {table_model.name}, subgraph {ectx.sg.index}"
                )
                embedding = {"subgraph": ectx.sg.index, "op": op, "tensor": table.index}
                if not one_model:
                    embedding["model"] = table_model.name
                findings.append(
                    Finding(
                        kind="tied_embedding",
                        title=f"Tied embedding and LM head ({vocab} × {table.shape[1]})",
                        detail=(
                            f"The {hctx.sg.ops[head.op].opcode} op {head.op} to vocabulary size "
                            f"reads {how} read by the {ectx.sg.ops[op].opcode} op {op} {where}."
                        ),
                        evidence_ops=_sorted([head.op] + ([op] if local else [])),
                        evidence_tensors=_sorted([w.index] + ([table.index] if local else [])),
                        confidence="high",  # byte identity is the evidence; names add nothing
                        subgraph=hctx.sg.index,
                        data={
                            "vocab": vocab,
                            "d_model": table.shape[1],
                            "buffer": w.buffer,
                            "head": {"subgraph": hctx.sg.index, "op": head.op, "tensor": w.index},
                            "embedding": embedding,
                        },
                    )
                )
    return findings


def _tied_embedding(model: ModelInfo, ctxs: list[_Ctx], digest: Digest | None) -> list[Finding]:
    return _tied_pairs(model, ctxs, model, ctxs, digest)


# ---------------------------------------------------------------------------------------------
# Local vs global attention
# ---------------------------------------------------------------------------------------------

_LOCAL_NAME = re.compile(r"local|sliding|(?<![a-z])swa(?![a-z])|window", re.IGNORECASE)
_GLOBAL_NAME = re.compile(r"global|(?<![a-z])full(?![a-z])", re.IGNORECASE)
# Between the attention scores and the SOFTMAX: masking, soft-capping, scaling.
_SCORE_THROUGH = PASS_THROUGH | {
    "ADD",
    "SUB",
    "MUL",
    "DIV",
    "TANH",
    "SELECT",
    "SELECT_V2",
    "MINIMUM",
    "MAXIMUM",
}
_COMBINE = frozenset({"ADD", "SUB", "SELECT", "SELECT_V2", "MINIMUM"})
_MASK_THROUGH = PASS_THROUGH | {
    "SLICE",
    "STRIDED_SLICE",
    "BROADCAST_TO",
    "GATHER",
    "TILE",
    "TRANSPOSE",
}


def _mask_root(ctx: _Ctx, softmax: int) -> int | None:
    """The tensor a SOFTMAX's mask comes from: an input, a constant or a tensor made outside this
    softmax's layer, found on an operand of the ops that combine scores with a mask."""
    layer = ctx.layer(softmax)
    x = ctx.sg.ops[softmax].inputs[0]
    for t in sorted(ctx.backward(x, _SCORE_THROUGH, 4), reverse=True):
        op = ctx.gi.producer_op(t)
        if op is None or op.opcode not in _COMBINE:
            continue
        for operand in op.inputs:
            root = operand
            for _ in range(6):
                p = ctx.gi.producer_op(root)
                if p is None or p.opcode not in _MASK_THROUGH or ctx.layer(p.index) != layer:
                    break
                root = p.inputs[0]
            tensor = ctx.sg.tensors[root] if root >= 0 else None
            if tensor is None or (tensor.is_constant and tensor.numel <= 1):
                continue
            p = ctx.gi.producer_op(root)
            if p is None or ctx.layer(p.index) != layer:
                return root
    return None


def _pattern_period(labels: list[str]) -> int:
    n = len(labels)
    return next(p for p in range(1, n + 1) if all(labels[i] == labels[i % p] for i in range(n)))


def _attention_names(ctx: _Ctx, softmax: int, root: int | None) -> str:
    text = ctx.names(softmax)
    return text if root is None else f"{text} {ctx.sg.tensors[root].name}"


def _label_kinds(
    members: dict[Any, list[int]],
    names: dict[Any, str],
    key_len: dict[Any, int | None],
) -> tuple[dict[Any, str], bool]:
    """Which of two attention kinds is local: by names, by key length (fewer keys = sliding
    window), or both when they agree. Returns (labels, named); none when the evidence disagrees."""
    by_name = {
        k: "local" if _LOCAL_NAME.search(t) else "global" if _GLOBAL_NAME.search(t) else ""
        for k, t in names.items()
    }
    named_pair = sorted(by_name.values()) == ["global", "local"]
    by_key: dict[Any, str] = {}
    lengths = set(key_len.values())
    if len(lengths) == 2 and None not in lengths:
        small = min(key_len, key=lambda k: key_len[k] or 0)
        by_key = {k: "local" if k == small else "global" for k in members}
    if named_pair and (not by_key or by_key == by_name):
        return by_name, True
    if by_key and not named_pair:
        return by_key, False
    return {}, False


def _attention_in(ctx: _Ctx) -> Finding | None:
    sg = ctx.sg
    softmaxes = [op.index for op in sg.ops if op.opcode == "SOFTMAX"]
    numbered = bool(softmaxes) and all(ctx.layer(s) is not None for s in softmaxes)
    per_layer: dict[int, int] = {}
    for i, s in enumerate(softmaxes):
        per_layer.setdefault(ctx.layer(s) if numbered else i, s)
    layers = sorted(per_layer)
    roots = {x: _mask_root(ctx, per_layer[x]) for x in layers}
    keys = {x: (sg.tensors[sg.ops[per_layer[x]].inputs[0]].shape or (None,))[-1] for x in layers}
    # Group by mask tensor, unless that says nothing (one mask, or one per layer): then by keys.
    n_roots = len(set(roots.values()))
    by_mask = n_roots == 2 or 2 <= n_roots < len(layers)
    kind_of: dict[int, Any] = roots if by_mask else keys
    kinds = list(dict.fromkeys(kind_of[x] for x in layers))
    if len(layers) < 2 or not 2 <= len(kinds) < max(len(layers), 3):
        return _attention_by_names(ctx)
    members = {k: [x for x in layers if kind_of[x] == k] for k in kinds}
    labels: dict[Any, str] = {}
    named = False
    if len(kinds) == 2:
        key_len = {
            k: keys[v[0]] if len({keys[x] for x in v}) == 1 else None for k, v in members.items()
        }
        text = {
            k: " ".join(_attention_names(ctx, per_layer[x], roots[x]) for x in v)
            for k, v in members.items()
        }
        labels, named = _label_kinds(members, text, key_len)
    letters = {
        k: {"local": "L", "global": "G"}.get(labels.get(k, ""), chr(ord("A") + i))
        for i, k in enumerate(kinds)
    }
    seq = [letters[kind_of[x]] for x in layers]
    period = _pattern_period(seq)
    counts = Counter(seq)
    if labels:
        title = f"Local and global attention: {counts['L']} local : {counts['G']} global"
    else:
        title = "Two kinds of attention mask: " + " : ".join(f"{counts[c]} {c}" for c in counts)
    if period < len(seq):
        title += f", repeating every {period} layers"
    key_lengths = {letters[k]: keys[v[0]] for k, v in members.items()}
    detail = (
        f"Layers differ by {'mask tensor' if by_mask else 'key length'} at their SOFTMAX; "
        f"pattern by {'layer' if numbered else 'softmax order'}: {''.join(seq)} ("
        + ", ".join(f"{c}: {n} keys" for c, n in key_lengths.items())
        + ")."
    )
    if named:
        detail += " Names say which kind is local (sliding window) and which global."
    elif labels:
        detail += " The kind with fewer keys is taken as the sliding window (local)."
    else:
        detail += " Neither names nor key lengths tell which kind is the sliding window."
    masks = {letters[kind_of[x]]: roots[x] for x in layers if roots[x] is not None}
    return Finding(
        kind="attention_pattern",
        title=title,
        detail=detail,
        evidence_ops=_sorted(per_layer.values()),
        evidence_tensors=_sorted(masks.values()),
        confidence="high" if named else "medium",
        subgraph=sg.index,
        data={
            "pattern": "".join(seq),
            "layers": dict(zip(layers, seq, strict=True)),
            "period": period,
            "masks": masks,
            "key_lengths": key_lengths,
            "numbered_by": "layer names" if numbered else "softmax order",
        },
    )


def _attention_by_names(ctx: _Ctx) -> Finding | None:
    """Names alone: layers whose activations say local/sliding vs global (low confidence)."""
    text = {x: _layer_names(ctx, x) for x in ctx.groups.layers}
    local = [x for x, t in text.items() if _LOCAL_NAME.search(t)]
    glob = [x for x, t in text.items() if _GLOBAL_NAME.search(t)]
    if not local or not glob or set(local) == set(glob):
        return None
    labels = {x: "L" if x in local else "G" for x in sorted(set(local) | set(glob))}
    return Finding(
        kind="attention_pattern",
        title="Local and global attention named in the graph",
        detail=(
            f"Tensor names say local/sliding in layers {local} and global in layers {glob}; "
            "no separate masks or key lengths were found."
        ),
        evidence_ops=(),
        evidence_tensors=(),
        confidence="low",
        subgraph=ctx.sg.index,
        data={"pattern": "".join(labels.values()), "layers": labels},
    )


def _attention_pattern(model: ModelInfo, ctxs: list[_Ctx], digest: Digest | None) -> list[Finding]:
    return [f for ctx in ctxs if (f := _attention_in(ctx)) is not None]


def _layer_names(ctx: _Ctx, layer: int) -> str:
    return " ".join(
        t.name
        for t in ctx.sg.tensors
        if ctx.groups.tensor_layer[t.index] == layer and not t.is_constant
    )


# ---------------------------------------------------------------------------------------------
# Registry and entry points
# ---------------------------------------------------------------------------------------------

Detector = Callable[[ModelInfo, list[_Ctx], Digest | None], list[Finding]]

DETECTORS: dict[str, Detector] = {
    "ffn_widths": _ffn_widths,
    "altup": _altup,
    "laurel": _laurel,
    "per_layer_embeddings": _per_layer_embeddings,
    "tied_embedding": _tied_embedding,
    "attention_pattern": _attention_pattern,
}


def find_all(
    model: ModelInfo, *, kinds: Iterable[str] | None = None, digest: Digest | None = None
) -> list[Finding]:
    """Every finding in `model` (or only `kinds`), ordered by subgraph then kind.

    `digest(model, subgraph, tensor)` is optional: with it, tied weights stored in two buffers
    are recognised by content as well as by buffer index.
    """
    ctxs = _contexts(model)
    wanted = list(DETECTORS) if kinds is None else list(kinds)
    return _ordered([f for k in wanted for f in _run(k, model, ctxs, digest)])


def _run(kind: str, model: ModelInfo, ctxs: list[_Ctx], digest: Digest | None) -> list[Finding]:
    if kind not in DETECTORS:
        raise ValueError(f"unknown finding kind {kind!r}; known: {sorted(DETECTORS)}")
    return DETECTORS[kind](model, ctxs, digest)


def _ordered(findings: list[Finding]) -> list[Finding]:
    order = {k: i for i, k in enumerate(DETECTORS)}
    return sorted(findings, key=lambda f: (f.subgraph, order[f.kind]))


def find_across(
    models: Sequence[ModelInfo],
    *,
    kinds: Iterable[str] | None = None,
    digest: Digest | None = None,
) -> dict[str, list[Finding]]:
    """Findings of several models read together (the sections of one .task / .litertlm bundle),
    keyed by `ModelInfo.name`. Each model gets `find_all`; with `digest`, an LM head in one
    section that holds the same bytes as an embedding table in another is reported as tied in
    the head's list (its `data["embedding"]["model"]` names the other section)."""
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique to key the findings: {names}")
    wanted = list(DETECTORS) if kinds is None else list(kinds)
    ctxs = {m.name: _contexts(m) for m in models}
    out = {}
    for m in models:
        found = [f for k in wanted for f in _run(k, m, ctxs[m.name], digest)]
        if "tied_embedding" in wanted and digest is not None:
            for other in models:
                if other is not m:
                    found += _tied_pairs(m, ctxs[m.name], other, ctxs[other.name], digest)
        out[m.name] = _ordered(found)
    return out


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
