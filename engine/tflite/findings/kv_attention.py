"""Attention blocks found from a signature's KV-cache inputs: one per `kv_cache_k_<i>` input.

Google's converter (litert-torch, `export_hf`) names each layer's cache inputs
`kv_cache_k_<i>` / `kv_cache_v_<i>` and writes the new key with a DYNAMIC_UPDATE_SLICE; the
scores are a BATCH_MATMUL of the query with that updated cache (or an
`odml.scaled_dot_product_attention` composite reading it), masked by an ADD before the SOFTMAX.
Layer numbers come from the cache index, never from op names: the converter reuses one layer's
name for ops that several layers share after common-subexpression elimination.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from engine.tflite.analysis import PASS_THROUGH
from engine.tflite.findings.base import Ctx, MatMul
from engine.tflite.graph import ModelInfo, SignatureInfo

_KV = re.compile(r"kv_cache_([kv])_(\d+)$")
_MASK = re.compile(r"(?:^|_)mask$")
SDPA = "odml.scaled_dot_product_attention"
# Between the QK scores and the SOFTMAX: scaling, soft-capping, the mask ADD.
_SCORE_THROUGH = PASS_THROUGH | {"ADD", "SUB", "MUL", "DIV", "TANH", "SELECT", "SELECT_V2"}
# What carries a mask from where it is made to the ADD: copies, repeats, reshapes.
_MASK_CARRY = PASS_THROUGH | {"CONCATENATION", "BROADCAST_TO", "TILE", "SLICE", "STRIDED_SLICE"}
_BAND = frozenset({"GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL"})


@dataclass(frozen=True)
class KVAttention:
    """One layer's attention, as the graph wires it to that layer's KV cache."""

    layer: int  # the cache index i of kv_cache_k_<i>
    k_input: int  # tensor indices of the cache inputs
    v_input: int | None
    k_write: int | None  # the op that writes the new key into the cache
    scores: int | None  # the QK BATCH_MATMUL, or the SDPA composite
    softmax: int | None
    mask_add: int | None  # the op that adds the mask to the scores
    mask_root: int | None  # the tensor the mask is made from, within what carries it
    kv_heads: int | None
    head_dim: int | None
    q_proj: MatMul | None  # the nearest constant matmul upstream of the query
    band_ops: tuple[int, ...]  # comparisons that cut a window out of the mask (sliding window)
    window_const: int | None  # the constant subtracted from the position for that window
    rope_tables: tuple[int, ...]  # constant tensors that COS/SIN of the query are computed from

    @property
    def ops(self) -> tuple[int, ...]:
        found = (self.k_write, self.scores, self.softmax, self.mask_add)
        return tuple(op for op in found if op is not None)


def kv_inputs(sig: SignatureInfo) -> dict[int, dict[str, int]]:
    """Cache index → {"k": tensor, "v": tensor} from the signature's input names."""
    out: dict[int, dict[str, int]] = {}
    for name, tensor in sig.inputs.items():
        m = _KV.search(name)
        if m:
            out.setdefault(int(m.group(2)), {})[m.group(1)] = tensor
    return dict(sorted(out.items()))


def mask_input(sig: SignatureInfo) -> int | None:
    """The signature's attention-mask input, when it has one named so."""
    return next((t for name, t in sig.inputs.items() if _MASK.search(name)), None)


def signature_of(model: ModelInfo, subgraph: int) -> SignatureInfo | None:
    return next((s for s in model.signatures if s.subgraph == subgraph), None)


def _upstream(ctx: Ctx, tensor: int, max_ops: int) -> list[int]:
    """Ops upstream of `tensor`, nearest first (breadth first over producers), not looking past
    a constant matmul (the projection that starts this layer's path)."""
    seen: list[int] = []
    queue = deque([(tensor, 0)])
    visited = {tensor}
    while queue:
        t, depth = queue.popleft()
        op = ctx.gi.producer_op(t)
        if op is None or depth >= max_ops or op.index in seen:
            continue
        seen.append(op.index)
        if op.index in ctx.by_op:
            continue
        for x in op.inputs:
            if x >= 0 and x not in visited and not ctx.sg.tensors[x].is_constant:
                visited.add(x)
                queue.append((x, depth + 1))
    return seen


def _q_proj(ctx: Ctx, query: int) -> MatMul | None:
    by_op = ctx.by_op
    return next((by_op[op] for op in _upstream(ctx, query, 24) if op in by_op), None)


def _rope_tables(ctx: Ctx, query: int) -> tuple[int, ...]:
    """Constants the query's COS/SIN factors are computed from (RoPE inverse frequencies)."""
    tables: list[int] = []
    for op in _upstream(ctx, query, 24):
        o = ctx.sg.ops[op]
        if o.opcode not in ("COS", "SIN"):
            continue
        for up in [op, *_upstream(ctx, o.inputs[0], 4)]:
            for x in ctx.sg.ops[up].inputs:
                t = ctx.sg.tensors[x] if x >= 0 else None
                floats = t is not None and t.dtype.startswith("float")
                if floats and t.is_constant and t.numel > 1 and x not in tables:
                    tables.append(x)
    return tuple(tables)


def _mask(ctx: Ctx, softmax: int, scores_out: int) -> tuple[int | None, int | None]:
    """(the ADD that masks the scores, the tensor its mask operand is carried from)."""
    path = ctx.forward(scores_out, _SCORE_THROUGH, 6)
    if softmax not in path:
        return None, None
    score_side = {scores_out} | {y for op in path for y in ctx.sg.ops[op].outputs}
    for op in sorted(path):
        o = ctx.sg.ops[op]
        if op > softmax or o.opcode not in ("ADD", "SELECT", "SELECT_V2"):
            continue
        for operand in o.inputs:
            if operand < 0 or operand in score_side or ctx.sg.tensors[operand].is_constant:
                continue
            root = operand
            for _ in range(6):
                p = ctx.gi.producer_op(root)
                if p is None or p.opcode not in _MASK_CARRY or not p.inputs:
                    break
                root = p.inputs[0]
            return op, root
    return None, None


def _band(ctx: Ctx, root: int, mask_in: int | None) -> tuple[tuple[int, ...], int | None]:
    """Comparisons of a position table that cut a window out of the mask input, and the
    constant the position is shifted by (the window), when `root` is built that way."""
    if mask_in is None or root == mask_in:
        return (), None
    ups = _upstream(ctx, root, 10)
    reads_mask = any(mask_in in ctx.sg.ops[op].inputs for op in ups)
    band = [op for op in ups if ctx.sg.ops[op].opcode in _BAND]
    if not reads_mask or not band:
        return (), None
    window = None
    for op in band:
        for x in ctx.sg.ops[op].inputs:
            p = ctx.gi.producer_op(x) if x >= 0 else None
            if p is None or p.opcode != "SUB":
                continue
            const = [c for c in p.inputs if c >= 0 and ctx.sg.tensors[c].is_constant]
            if len(const) == 1 and ctx.sg.tensors[const[0]].numel == 1:
                window = const[0]
    return tuple(sorted(band)), window


def kv_attention(model: ModelInfo, ctx: Ctx) -> list[KVAttention]:
    """One `KVAttention` per K-cache input of the signature that runs `ctx`'s subgraph (empty
    when the subgraph is no signature's or has no cache inputs)."""
    sig = signature_of(model, ctx.sg.index)
    if sig is None:
        return []
    mask_in = mask_input(sig)
    out = []
    for layer, io in kv_inputs(sig).items():
        k = io.get("k")
        if k is None:
            continue
        write = next((c for c in ctx.gi.consumers[k] if ctx.sg.ops[c].opcode in _WRITES), None)
        cache = ctx.sg.ops[write].outputs[0] if write is not None else k
        scores = softmax = add = root = q_proj = None
        kv_heads = head_dim = None
        query = -1
        rope: tuple[int, ...] = ()
        for c in ctx.gi.consumers[cache]:
            o = ctx.sg.ops[c]
            if o.opcode == "BATCH_MATMUL" and len(o.inputs) >= 2 and o.inputs[1] == cache:
                scores = c
                query = o.inputs[0]
                break
            if o.opcode == "STABLEHLO_COMPOSITE" and o.options.get("name") == SDPA:
                scores = c
                query = o.inputs[0]
                break
        k_shape = ctx.sg.tensors[cache].shape
        if scores is not None:
            o = ctx.sg.ops[scores]
            adj = o.options.get("adj_y") or o.options.get("adjoint_rhs")
            if o.opcode == "BATCH_MATMUL" and len(k_shape) == 4:
                # [batch, kv_heads, keys, head_dim] with adj_y: the contraction is head_dim.
                kv_heads, head_dim = k_shape[1], (k_shape[3] if adj else k_shape[2])
                reach = ctx.forward(o.outputs[0], _SCORE_THROUGH, 6)
                softmax = next(
                    (s for s in sorted(reach) if ctx.sg.ops[s].opcode == "SOFTMAX"), None
                )
                if softmax is not None:
                    add, root = _mask(ctx, softmax, o.outputs[0])
            elif len(k_shape) == 4:
                kv_heads, head_dim = k_shape[1], k_shape[3]
                if len(o.inputs) >= 4 and o.inputs[3] >= 0:
                    add, root = scores, o.inputs[3]
            q_proj = _q_proj(ctx, query)
            rope = _rope_tables(ctx, query)
        band, window = _band(ctx, root, mask_in) if root is not None else ((), None)
        out.append(
            KVAttention(
                layer=layer,
                k_input=k,
                v_input=io.get("v"),
                k_write=write,
                scores=scores,
                softmax=softmax,
                mask_add=add,
                mask_root=root,
                kv_heads=kv_heads,
                head_dim=head_dim,
                q_proj=q_proj,
                band_ops=band,
                window_const=window,
                rope_tables=rope,
            )
        )
    return out


_WRITES = frozenset({"DYNAMIC_UPDATE_SLICE", "SCATTER_ND", "STABLEHLO_SCATTER"})


def layer_after(blocks: list[KVAttention], op: int) -> int | None:
    """The layer whose attention is the last to run before `op` (ops run in index order in a
    converter's graph), None before the first attention."""
    before = [a.layer for a in blocks if a.scores is not None and a.scores < op]
    return before[-1] if before else None


@dataclass(frozen=True)
class DeadTail:
    """A prefill-like signature that shows fewer of something than it has layers: it has KV-cache
    inputs for every layer but no output other than the caches, so what the last layer computes
    after writing its cache has no consumer there and the converter drops it."""

    signature: str
    layers: int
    found: int
    what: str

    @property
    def short(self) -> str:
        """ "29 MLPs in prefill_32 (30 layers; the last layer's MLP is dead code there)"."""
        missing = self.layers - self.found
        which = "the last layer's" if missing == 1 else f"the last {missing} layers'"
        return (
            f"{self.found} {self.what}s in {self.signature} ({self.layers} layers; {which} "
            f"{self.what} is dead code there)"
        )

    @property
    def detail(self) -> str:
        return (
            f"{self.signature} has {self.layers} KV caches but no output besides them (no "
            f"logits), so what the last layer computes after writing its cache has no consumer "
            f"and the converter drops it: read the signature with the logits output for all "
            f"{self.layers}."
        )


def dead_tail(model: ModelInfo, ctx: Ctx, found: int, what: str) -> DeadTail | None:
    """The `DeadTail` of `ctx`'s signature when it shows `found` < its layers, else None."""
    sig = signature_of(model, ctx.sg.index)
    if sig is None:
        return None
    layers = len(kv_inputs(sig))
    only_caches = all(_KV.search(name.removesuffix("_output")) for name in sig.outputs)
    if not layers or found >= layers or not only_caches:
        return None
    return DeadTail(sig.key, layers, found, what)
