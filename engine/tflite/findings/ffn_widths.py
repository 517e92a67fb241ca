"""FFN widths per layer; widths that differ are MatFormer-style (arXiv:2310.07707)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from engine.tflite.analysis import PASS_THROUGH
from engine.tflite.findings.base import (
    Ctx,
    Digest,
    Finding,
    MatMul,
    confidence_of,
    sorted_ids,
)
from engine.tflite.findings.kv_attention import dead_tail, kv_attention, layer_after
from engine.tflite.graph import ModelInfo

KIND = "ffn_widths"

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
class Mlp:
    down: MatMul
    ups: tuple[MatMul, ...]

    @property
    def width(self) -> int:
        return self.down.d_in

    @property
    def ops(self) -> tuple[int, ...]:
        return (*(u.op for u in self.ups), self.down.op)


def find_mlps(ctx: Ctx) -> list[Mlp]:
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
    return [Mlp(by_op[d], tuple(ups)) for d, ups in sorted(ups_of.items())]


def detect(model: ModelInfo, ctxs: list[Ctx], digest: Digest | None) -> list[Finding]:
    """One finding per subgraph with two or more MLPs: their hidden width per layer."""
    findings = []
    for ctx in ctxs:
        mlps = find_mlps(ctx)
        structure = len(mlps) >= 2
        if structure:
            # Layers by KV cache when the signature has them (the converter's op names repeat
            # one layer's name), else by names, else by the order the MLPs run in.
            blocks = kv_attention(model, ctx)
            by_cache = bool(blocks) and all(
                layer_after(blocks, m.down.op) is not None for m in mlps
            )
            numbered = by_cache or all(ctx.layer(m.down.op) is not None for m in mlps)
            per_layer: dict[int, list[Mlp]] = defaultdict(list)
            for i, m in enumerate(mlps):
                layer = layer_after(blocks, m.down.op) if by_cache else ctx.layer(m.down.op)
                per_layer[layer if numbered else i].append(m)
            widths = {layer: max(m.width for m in ms) for layer, ms in sorted(per_layer.items())}
            ops = [op for m in mlps for op in m.ops]
            weights = [mm.weight for m in mlps for mm in (*m.ups, m.down)]
            names = all(_MLP_NAME.search(ctx.names(op)) for op in ops)
            d = Counter(m.down.d_out for m in mlps).most_common(1)[0][0]
            how = (
                "layers by the KV cache their attention reads"
                if by_cache
                else "layer names"
                if numbered
                else "the order the MLPs run in (no layer names)"
            )
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
        dead = dead_tail(model, ctx, len(widths), "MLP")
        confidence = confidence_of(names, structure)
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
            if dead:
                title = f"FFN width {distinct[0]} in all {dead.short}"
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
                    + (f" {dead.detail}" if dead else "")
                ),
                evidence_ops=sorted_ids(ops),
                evidence_tensors=sorted_ids(weights),
                confidence=confidence,
                subgraph=ctx.sg.index,
                data={
                    "widths": widths,
                    "d_model": d,
                    "differ": len(distinct) > 1,
                    "dead_layers": dead.layers - dead.found if dead else 0,
                },
            )
        )
    return findings
