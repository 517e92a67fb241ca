"""Local vs global attention: layers whose SOFTMAX sees another mask or key length."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from engine.tflite.analysis import PASS_THROUGH
from engine.tflite.findings.base import (
    Ctx,
    Digest,
    Finding,
    sorted_ids,
)
from engine.tflite.findings.kv_attention import kv_attention, mask_input, signature_of
from engine.tflite.graph import ModelInfo

KIND = "attention_pattern"

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


def _mask_root(ctx: Ctx, softmax: int) -> int | None:
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


def _attention_names(ctx: Ctx, softmax: int, root: int | None) -> str:
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


def _attention_in(ctx: Ctx) -> Finding | None:
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
        evidence_ops=sorted_ids(per_layer.values()),
        evidence_tensors=sorted_ids(masks.values()),
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


def _attention_by_names(ctx: Ctx) -> Finding | None:
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


def _attention_by_cache(model: ModelInfo, ctx: Ctx) -> Finding | None:
    """Layers numbered by their KV-cache inputs (a converter's signature): local where the scores
    get the mask input cut to a band of positions, global where they get it unchanged."""
    sig = signature_of(model, ctx.sg.index)
    mask = mask_input(sig) if sig else None
    blocks = [a for a in kv_attention(model, ctx) if a.mask_root is not None]
    if mask is None or len(blocks) < 2:
        return None
    labels = {a.layer: "L" if a.band_ops else "G" if a.mask_root == mask else "?" for a in blocks}
    if "?" in labels.values() or len(set(labels.values())) < 2:
        return None
    seq = [labels[x] for x in sorted(labels)]
    period = _pattern_period(seq)
    counts = Counter(seq)
    title = f"Local and global attention: {counts['L']} local : {counts['G']} global"
    if period < len(seq):
        title += f", repeating every {period} layers"
    band = sorted({op for a in blocks for op in a.band_ops})
    local = [a.layer for a in blocks if a.band_ops]
    windows = sorted({a.window_const for a in blocks if a.window_const is not None})
    detail = (
        f"Pattern by KV cache ({sig.key}): {''.join(seq)}. Layers {local} add the mask input cut "
        f"to a band of positions (comparison ops {band}) to their scores: a sliding window; the "
        f"others add the mask input unchanged."
        + (f" The window is the constant tensor {windows[0]}." if len(windows) == 1 else "")
    )
    return Finding(
        kind="attention_pattern",
        title=title,
        detail=detail,
        evidence_ops=sorted_ids(
            [*band, *(a.mask_add for a in blocks), *(a.softmax for a in blocks)]
        ),
        evidence_tensors=sorted_ids([mask, *(a.mask_root for a in blocks), *windows]),
        confidence="medium",
        subgraph=ctx.sg.index,
        data={
            "pattern": "".join(seq),
            "layers": labels,
            "period": period,
            "masks": {"L": next(a.mask_root for a in blocks if a.band_ops), "G": mask},
            "numbered_by": "KV cache",
            "window_tensor": windows[0] if len(windows) == 1 else None,
        },
    )


def detect(model: ModelInfo, ctxs: list[Ctx], digest: Digest | None) -> list[Finding]:
    """One finding per subgraph whose layers use two kinds of attention."""
    found = []
    for ctx in ctxs:
        f = _attention_by_cache(model, ctx) or _attention_in(ctx)
        if f is not None:
            found.append(f)
    return found


def _layer_names(ctx: Ctx, layer: int) -> str:
    return " ".join(
        t.name
        for t in ctx.sg.tensors
        if ctx.groups.tensor_layer[t.index] == layer and not t.is_constant
    )
