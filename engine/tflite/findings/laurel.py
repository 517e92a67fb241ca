"""LAuReL (arXiv:2411.07501): low-rank d→r→d side branches added back to the residual stream."""

from __future__ import annotations

import re

from engine.tflite.analysis import PASS_THROUGH
from engine.tflite.findings.base import (
    Ctx,
    Digest,
    Finding,
    MatMul,
    any_name,
    confidence_of,
    sorted_ids,
)
from engine.tflite.findings.kv_attention import dead_tail
from engine.tflite.graph import ModelInfo

KIND = "laurel"

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


def detect(
    model: ModelInfo, ctxs: list[Ctx], digest: Digest | None, *, max_ratio: float = 0.25
) -> list[Finding]:
    """One finding per subgraph with low-rank residual branches or LAuReL names."""
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
        named = any_name(ctx.sg, _LAUREL_NAME)
        structure = bool(blocks)
        names = structure and all(
            _LAUREL_NAME.search(ctx.names(left.op) + " " + ctx.names(right.op))
            for left, right, _ in blocks
        )
        confidence = confidence_of(names if structure else bool(named), structure)
        if confidence is None:
            continue
        ops = [op for left, right, add in blocks for op in (left.op, right.op, add)]
        layers = sorted({ctx.layer(b[0].op) for b in blocks if ctx.layer(b[0].op) is not None})
        ranks = sorted({b[0].d_out for b in blocks})
        dims = sorted({b[0].d_in for b in blocks})
        dead = dead_tail(model, ctx, len(blocks), "LAuReL block") if structure else None
        if structure:
            places = dead.short if dead else f"{len(blocks)} places"
            title = (
                f"LAuReL-style low-rank residual branches: rank {'/'.join(map(str, ranks))} "
                f"in {places}"
            )
            detail = (
                f"{len(blocks)} pairs of matmuls d→r→d (d={'/'.join(map(str, dims))}, "
                f"r={'/'.join(map(str, ranks))}) wired back-to-back, whose output is added to "
                "the stream the first one reads"
                + (f"; layers {', '.join(map(str, layers))}" if layers else "")
                + ("; names say laurel" if names else "")
                + "."
                + (f" {dead.detail}" if dead else "")
            )
        else:
            title = "LAuReL named in the graph (no low-rank residual branch found)"
            detail = f"{len(named)} tensor names mention laurel; no d→r→d matmul pair was found."
        findings.append(
            Finding(
                kind="laurel",
                title=title,
                detail=detail,
                evidence_ops=sorted_ids(ops),
                evidence_tensors=sorted_ids(
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
