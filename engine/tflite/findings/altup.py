"""AltUp (arXiv:2301.13310): k parallel residual streams mixed by learned coefficients."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from engine.tflite.findings.base import (
    Confidence,
    Ctx,
    Digest,
    Finding,
    MatMul,
    any_name,
    confidence_of,
    sorted_ids,
)
from engine.tflite.findings.ffn_widths import find_mlps
from engine.tflite.findings.kv_attention import dead_tail
from engine.tflite.graph import ModelInfo

KIND = "altup"

_ALTUP_NAME = re.compile(r"alt_?up", re.IGNORECASE)


def _d_model(ctx: Ctx) -> int | None:
    widths = Counter(m.d_in for m in ctx.mms)
    return widths.most_common(1)[0][0] if widths else None


def detect(model: ModelInfo, ctxs: list[Ctx], digest: Digest | None) -> list[Finding]:
    """One finding per subgraph with AltUp streams, coefficient matmuls or AltUp names."""
    findings = []
    for ctx in ctxs:
        named = any_name(ctx.sg, _ALTUP_NAME)
        d = Counter(m.down.d_out for m in find_mlps(ctx)).most_common(1)
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
            confidence = confidence_of(bool(named), False)
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
        dead = dead_tail(model, ctx, len(correct), "AltUp correction") if correct else None
        if dead:
            parts.append(dead.short + ". " + dead.detail.rstrip("."))
        findings.append(
            Finding(
                kind="altup",
                title=title,
                detail="; ".join(parts) + ".",
                evidence_ops=sorted_ids(ops),
                evidence_tensors=sorted_ids(stacked or named[:50]),
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
