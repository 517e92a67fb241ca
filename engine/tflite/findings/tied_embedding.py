"""Tied embedding and LM head: one weight read by a token lookup and the vocab matmul."""

from __future__ import annotations

from engine.tflite.findings.base import (
    Ctx,
    Digest,
    Finding,
    gathers,
    sorted_ids,
)
from engine.tflite.graph import ModelInfo

KIND = "tied_embedding"


def tied_pairs(
    head_model: ModelInfo,
    head_ctxs: list[Ctx],
    table_model: ModelInfo,
    table_ctxs: list[Ctx],
    digest: Digest | None,
) -> list[Finding]:
    """Matmuls to vocabulary size in `head_model` that read the weights of an embedding lookup in
    `table_model`: the same buffer (or tensor) of one model, or, when `digest` is given, two
    buffers with equal digests (the only way across two models, e.g. two .task sections)."""
    one_model = head_model is table_model
    tables = [(ctx, op, table) for ctx in table_ctxs for op, table in gathers(ctx)]
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
                        evidence_ops=sorted_ids([head.op] + ([op] if local else [])),
                        evidence_tensors=sorted_ids([w.index] + ([table.index] if local else [])),
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


def detect(model: ModelInfo, ctxs: list[Ctx], digest: Digest | None) -> list[Finding]:
    """One finding per LM head that reads an embedding table of the same model."""
    return tied_pairs(model, ctxs, model, ctxs, digest)
