"""Architecture findings read off a TFLite graph: each claim carries the ops and tensors behind it.

The techniques are the ones the Gemma-3n reverse-engineering seed looks for (seed 000, "Reverse
Engineering Gemma 3n"): MatFormer FFN widths (arXiv:2310.07707), AltUp streams
(arXiv:2301.13310), LAuReL low-rank residuals (arXiv:2411.07501), per-layer embeddings, tied
embedding / LM head, and local vs global attention. Confidence: "high" when names and graph
structure agree, "medium" on structure alone, "low" on names alone; nothing is reported without
evidence in the graph.

One module per detector, each with `KIND` and `detect(model, contexts, digest)`; `base` holds
what they share. To add a detector, write its module and add it to `_MODULES` below.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.tflite.findings import (
    altup,
    attention_pattern,
    ffn_widths,
    laurel,
    per_layer_embeddings,
    tied_embedding,
)
from engine.tflite.findings.base import (
    Confidence,
    Ctx,
    Detector,
    Digest,
    Finding,
    MatMul,
    contexts,
    digest_from_readers,
    findings_table,
    matmuls,
)
from engine.tflite.findings.tied_embedding import tied_pairs
from engine.tflite.graph import ModelInfo

__all__ = [
    "DETECTORS",
    "Confidence",
    "Detector",
    "Digest",
    "Finding",
    "MatMul",
    "digest_from_readers",
    "find_across",
    "find_all",
    "findings_table",
    "matmuls",
]

# Report order: findings of one subgraph are listed in this order.
_MODULES = (ffn_widths, altup, laurel, per_layer_embeddings, tied_embedding, attention_pattern)
DETECTORS: dict[str, Detector] = {m.KIND: m.detect for m in _MODULES}


def find_all(
    model: ModelInfo, *, kinds: Iterable[str] | None = None, digest: Digest | None = None
) -> list[Finding]:
    """Every finding in `model` (or only `kinds`), ordered by subgraph then kind.

    `digest(model, subgraph, tensor)` is optional: with it, tied weights stored in two buffers
    are recognised by content as well as by buffer index.
    """
    ctxs = contexts(model)
    wanted = list(DETECTORS) if kinds is None else list(kinds)
    return _ordered([f for k in wanted for f in _run(k, model, ctxs, digest)])


def _run(kind: str, model: ModelInfo, ctxs: list[Ctx], digest: Digest | None) -> list[Finding]:
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
    ctxs = {m.name: contexts(m) for m in models}
    out = {}
    for m in models:
        found = [f for k in wanted for f in _run(k, m, ctxs[m.name], digest)]
        if tied_embedding.KIND in wanted and digest is not None:
            for other in models:
                if other is not m:
                    found += tied_pairs(m, ctxs[m.name], other, ctxs[other.name], digest)
        out[m.name] = _ordered(found)
    return out
