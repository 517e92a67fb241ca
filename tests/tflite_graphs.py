"""Hand-built TFLite graph models (ModelInfo) with planted structure, for the analysis tests."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

from engine.tflite.graph import ModelInfo, OpInfo, Quantization, SubgraphInfo, TensorInfo

_BITS = {"float32": 32, "float16": 16, "int32": 32, "int8": 8, "int4": 4, "int64": 64}


@dataclass
class ModelBuilder:
    """Buffers are numbered model-wide (0 = no data), as in a real flatbuffer."""

    name: str = "synthetic.tflite"
    subgraphs: list[SubgraphBuilder] = field(default_factory=list)
    n_buffers: int = 1

    def subgraph(self, name: str = "") -> SubgraphBuilder:
        sg = SubgraphBuilder(self, len(self.subgraphs), name)
        self.subgraphs.append(sg)
        return sg

    def new_buffer(self) -> int:
        self.n_buffers += 1
        return self.n_buffers - 1

    def build(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            version=3,
            description="hand-built",
            metadata={},
            signatures=(),
            subgraphs=tuple(sg.build() for sg in self.subgraphs),
            file_bytes=0,
        )


@dataclass
class SubgraphBuilder:
    model: ModelBuilder
    index: int
    name: str
    tensors: list[TensorInfo] = field(default_factory=list)
    ops: list[OpInfo] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    strip_names: bool = False  # keep only `layer_N/` of every name: structure must speak alone

    def _name(self, name: str) -> str:
        if not self.strip_names:
            return name
        match = re.search(r"layer_\d+", name)
        return f"{match.group(0)}/t{len(self.tensors)}" if match else f"t{len(self.tensors)}"

    def tensor(self, name: str, shape: tuple[int, ...], dtype: str = "float32") -> int:
        name = self._name(name)
        t = TensorInfo(len(self.tensors), name, tuple(shape), None, dtype, 0, 0)
        self.tensors.append(t)
        return t.index

    def input(self, name: str, shape: tuple[int, ...], dtype: str = "float32") -> int:
        t = self.tensor(name, shape, dtype)
        self.inputs.append(t)
        return t

    def const(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: str = "int8",
        quant: str | None = "channel",
        buffer: int | None = None,
    ) -> int:
        """A constant; `buffer=` reuses another tensor's buffer (tied weights)."""
        numel = math.prod(shape)
        nbytes = max(1, numel * _BITS[dtype] // 8)
        q = None
        if quant == "channel":
            q = Quantization(scale=(0.01,) * shape[0], zero_point=(0,) * shape[0])
        elif quant == "tensor":
            q = Quantization(scale=(0.01,), zero_point=(0,))
        buf = self.model.new_buffer() if buffer is None else buffer
        name = self._name(name)
        t = TensorInfo(len(self.tensors), name, tuple(shape), None, dtype, buf, nbytes, False, q)
        self.tensors.append(t)
        return t.index

    def op(self, opcode: str, inputs: list[int], outputs: list[int], **options) -> int:
        self.ops.append(
            OpInfo(len(self.ops), opcode, False, 1, tuple(inputs), tuple(outputs), options)
        )
        return len(self.ops) - 1

    def unary(self, opcode: str, x: int, name: str, shape: tuple[int, ...] | None = None) -> int:
        y = self.tensor(name, shape or self.tensors[x].shape)
        self.op(opcode, [x], [y])
        return y

    def binary(self, opcode: str, a: int, b: int, name: str) -> int:
        sa, sb = self.tensors[a].shape, self.tensors[b].shape
        y = self.tensor(name, sa if len(sa) >= len(sb) else sb)
        self.op(opcode, [a, b], [y])
        return y

    def fc(self, x: int, out: int, name: str, weight: int | None = None) -> tuple[int, int]:
        """FULLY_CONNECTED x[..., d] · W[out, d]ᵀ → (output tensor, op index)."""
        d = self.tensors[x].shape[-1]
        w = weight if weight is not None else self.const(f"{name}/weights", (out, d))
        y = self.tensor(name, (*self.tensors[x].shape[:-1], out))
        return y, self.op("FULLY_CONNECTED", [x, w, -1], [y])

    def rmsnorm(self, x: int, name: str) -> int:
        d = self.tensors[x].shape[-1]
        sq = self.binary("MUL", x, x, f"{name}/square")
        mean = self.unary("MEAN", sq, f"{name}/mean", (*self.tensors[x].shape[:-1], 1))
        eps = self.const(f"{name}/eps", (1,), "float32", None)
        var = self.binary("ADD", mean, eps, f"{name}/add_eps")
        inv = self.unary("RSQRT", var, f"{name}/rsqrt")
        normed = self.binary("MUL", x, inv, f"{name}/normed")
        scale = self.const(f"{name}/scale", (d,), "float32", None)
        return self.binary("MUL", normed, scale, f"{name}/out")

    def build(self) -> SubgraphInfo:
        return SubgraphInfo(
            self.index,
            self.name,
            tuple(self.inputs),
            tuple(self.outputs),
            tuple(self.tensors),
            tuple(self.ops),
        )


def _attention(
    sg: SubgraphBuilder, h: int, p: str, heads: int, key_len: int, mask: int
) -> tuple[int, int]:
    """Self-attention over a cache of `key_len` keys; returns (output, softmax op index)."""
    _, t, d = sg.tensors[h].shape
    hd = d // heads
    q, _ = sg.fc(h, d, f"{p}/attn/q_proj")
    q4 = sg.unary("RESHAPE", q, f"{p}/attn/q_heads", (1, heads, t, hd))
    k_cache = sg.input(f"{p}/kv_cache_k", (1, heads, hd, key_len))
    v_cache = sg.input(f"{p}/kv_cache_v", (1, heads, key_len, hd))
    scores = sg.tensor(f"{p}/attn/scores", (1, heads, t, key_len))
    sg.op("BATCH_MATMUL", [q4, k_cache], [scores])
    masked = sg.binary("ADD", scores, mask, f"{p}/attn/masked")
    probs = sg.tensor(f"{p}/attn/probs", (1, heads, t, key_len))
    softmax = sg.op("SOFTMAX", [masked], [probs], beta=1.0)
    ctx = sg.tensor(f"{p}/attn/context", (1, heads, t, hd))
    sg.op("BATCH_MATMUL", [probs, v_cache], [ctx])
    merged = sg.unary("RESHAPE", ctx, f"{p}/attn/merged", (1, t, d))
    out, _ = sg.fc(merged, d, f"{p}/attn/o_proj")
    return out, softmax


def _mlp(sg: SubgraphBuilder, h: int, p: str, width: int) -> tuple[int, list[int]]:
    """GeGLU MLP; returns (output, [gate op, up op, down op])."""
    d = sg.tensors[h].shape[-1]
    gate, gate_op = sg.fc(h, width, f"{p}/mlp/gate_proj")
    up, up_op = sg.fc(h, width, f"{p}/mlp/up_proj")
    act = sg.unary("GELU", gate, f"{p}/mlp/gelu")
    hidden = sg.binary("MUL", act, up, f"{p}/mlp/hidden")
    out, down_op = sg.fc(hidden, d, f"{p}/mlp/down_proj")
    return out, [gate_op, up_op, down_op]


@dataclass
class Planted:
    """What a builder put into the graph, for tests to compare findings against."""

    model: ModelInfo
    decode: int  # index of the decoder subgraph
    mlp_ops: dict[int, list[int]] = field(default_factory=dict)  # layer → [gate, up, down]
    laurel_ops: dict[int, list[int]] = field(default_factory=dict)  # layer → [left, right]
    altup_ops: dict[int, list[int]] = field(default_factory=dict)  # layer → coefficient FCs
    softmax_ops: dict[int, int] = field(default_factory=dict)
    embedding_gather: tuple[int, int] | None = None  # (subgraph, op)
    lm_head: tuple[int, int] | None = None
    ple_gather: tuple[int, int] | None = None


def gemma3n_like(
    *,
    widths: tuple[int, ...] = (64, 64, 96, 96),
    d: int = 32,
    seq: int = 4,
    vocab: int = 1024,
    heads: int = 4,
    streams: int = 4,
    laurel_rank: int = 4,
    ple_dim: int = 8,
    attention: str = "LLLG",
    local_keys: int = 8,
    global_keys: int = 32,
    altup: bool = True,
    laurel: bool = True,
    ple: bool = True,
    tied: bool = True,
    names: bool = True,
) -> Planted:
    """A Gemma-3n-shaped model: embedder, per-layer embedder and a decoder whose layers carry
    AltUp streams, a LAuReL branch, per-layer embeddings, local/global attention and MLPs of the
    given widths. `names=False` keeps only `layer_N/` prefixes (structure must speak alone)."""
    n_layers = len(widths)
    mb = ModelBuilder("gemma3n_like.tflite")
    planted = Planted(model=None, decode=-1)  # type: ignore[arg-type]

    emb = mb.subgraph("TF_LITE_EMBEDDER")
    emb.strip_names = not names
    tokens = emb.input("token_ids", (1, seq), "int32")
    table = emb.const("embedder/lookup_embedding_table", (vocab, d))
    rows = emb.tensor("embedder/rows", (1, seq, d))
    gather = emb.op("GATHER", [table, tokens], [rows], axis=0)
    planted.embedding_gather = (0, gather)
    scale = emb.const("embedder/scale", (1,), "float32", None)
    emb.outputs.append(emb.binary("MUL", rows, scale, "embeddings"))

    if ple:
        ple_sg = mb.subgraph("TF_LITE_PER_LAYER_EMBEDDER")
        ple_sg.strip_names = not names
        ids = ple_sg.input("token_ids", (1, seq), "int32")
        ple_table = ple_sg.const("per_layer_embedder/table", (vocab, n_layers * ple_dim), "int4")
        ple_rows = ple_sg.tensor("per_layer_embedder/rows", (1, seq, n_layers * ple_dim))
        planted.ple_gather = (1, ple_sg.op("GATHER", [ple_table, ids], [ple_rows], axis=0))
        ple_sg.outputs.append(
            ple_sg.unary("RESHAPE", ple_rows, "per_layer_embeddings", (1, seq, n_layers, ple_dim))
        )

    sg = mb.subgraph("TF_LITE_PREFILL_DECODE")
    sg.strip_names = not names
    x = sg.input("embeddings", (1, seq, d))
    planted.decode = sg.index
    if ple:
        ple_in = sg.input("per_layer_embeddings", (1, seq, n_layers, ple_dim))
    masks = {
        "L": sg.input("local_mask", (1, 1, seq, local_keys)),
        "G": sg.input("global_mask", (1, 1, seq, global_keys)),
    }
    if altup:
        extra = [sg.fc(x, d, f"altup_projection_{i}")[0] for i in range(streams - 1)]
        stacked = sg.tensor("altup/stacked", (streams, 1, seq, d))
        sg.op("PACK", [x, *extra], [stacked], axis=0, values_count=streams)
        x = stacked

    for layer, width in enumerate(widths):
        p = f"layer_{layer}"

        def nm(name: str, p: str = p) -> str:
            return f"{p}/{name}"

        coef_ops = []
        if altup:
            # AltUp predict: a router picks mixing coefficients; streams are mixed (stream dim 0).
            active = sg.unary("GATHER", x, nm("altup/predict/active"), (1, 1, seq, d))
            active = sg.unary("RESHAPE", active, nm("altup/predict/active_flat"), (1, seq, d))
            routed, r_op = sg.fc(
                sg.rmsnorm(active, nm("altup/predict/norm")), streams, nm("altup/predict/router")
            )
            routed = sg.unary("TANH", routed, nm("altup/predict/tanh"))
            coefs, c_op = sg.fc(routed, streams * streams, nm("altup/predict/coefs"))
            coefs = sg.unary(
                "RESHAPE", coefs, nm("altup/predict/coefs_square"), (1, seq, streams, streams)
            )
            xt = sg.unary("TRANSPOSE", x, nm("altup/predict/transpose"), (1, seq, d, streams))
            mixed = sg.tensor(nm("altup/predict/mixed"), (1, seq, d, streams))
            sg.op("BATCH_MATMUL", [xt, coefs], [mixed])
            mixed = sg.unary("TRANSPOSE", mixed, nm("altup/predict/mixed_t"), (streams, 1, seq, d))
            predictions = sg.binary("ADD", mixed, x, nm("altup/predict/predictions"))
            h_in = sg.unary("GATHER", predictions, nm("altup/active_prediction"), (1, 1, seq, d))
            h_in = sg.unary("RESHAPE", h_in, nm("altup/active_prediction_flat"), (1, seq, d))
            coef_ops += [r_op, c_op]
        else:
            h_in = x

        h = sg.rmsnorm(h_in, nm("pre_attention_norm"))
        kind = attention[layer % len(attention)]
        attn, softmax = _attention(
            sg, h, p, heads, local_keys if kind == "L" else global_keys, masks[kind]
        )
        planted.softmax_ops[layer] = softmax
        attn = sg.rmsnorm(attn, nm("post_attention_norm"))
        if laurel:
            left, l_op = sg.fc(h, laurel_rank, nm("laurel/linear_left"))
            right, r_op = sg.fc(left, d, nm("laurel/linear_right"))
            branch = sg.binary("ADD", h, sg.rmsnorm(right, nm("laurel/norm")), nm("laurel/out"))
            attn = sg.binary("ADD", attn, branch, nm("attn_laurel"))
            planted.laurel_ops[layer] = [l_op, r_op]
        resid = sg.binary("ADD", h_in, attn, nm("residual"))
        mlp_out, mlp_ops = _mlp(sg, sg.rmsnorm(resid, nm("pre_ffw_norm")), p, width)
        planted.mlp_ops[layer] = mlp_ops
        out = sg.binary("ADD", resid, mlp_out, nm("mlp_residual"))

        if ple:
            gate, _ = sg.fc(out, ple_dim, nm("per_layer_gate"))
            gate = sg.unary("GELU", gate, nm("per_layer_gate_gelu"))
            piece = sg.unary("STRIDED_SLICE", ple_in, nm("per_layer_slice"), (1, seq, 1, ple_dim))
            piece = sg.unary("RESHAPE", piece, nm("per_layer_input"), (1, seq, ple_dim))
            mixed_ple = sg.binary("MUL", gate, piece, nm("per_layer_mixed"))
            proj, _ = sg.fc(mixed_ple, d, nm("per_layer_projection"))
            out = sg.binary("ADD", out, sg.rmsnorm(proj, nm("per_layer_norm")), nm("per_layer_out"))

        if altup:
            # AltUp correct: the innovation of the active stream, scaled per stream, fixes all.
            innovation = sg.binary("SUB", out, h_in, nm("altup/correct/innovation"))
            routed, r_op = sg.fc(
                sg.rmsnorm(out, nm("altup/correct/norm")), streams, nm("altup/correct/router")
            )
            routed = sg.unary("TANH", routed, nm("altup/correct/tanh"))
            coefs, c_op = sg.fc(routed, streams, nm("altup/correct/coefs"))
            coefs = sg.unary("TRANSPOSE", coefs, nm("altup/correct/coefs_t"), (streams, 1, seq, 1))
            scaled = sg.tensor(nm("altup/correct/scaled"), (streams, 1, seq, d))
            sg.op("MUL", [coefs, innovation], [scaled])
            x = sg.binary("ADD", scaled, predictions, nm("altup/correct/corrected"))
            coef_ops += [r_op, c_op]
            planted.altup_ops[layer] = coef_ops
        else:
            x = out

    if altup:
        x = sg.unary("MEAN", x, "final/altup_unembed", (1, seq, d))
    x = sg.rmsnorm(x, "final_norm")
    head_w = sg.const(
        "embedder.decode/composite", (vocab, d), buffer=emb.tensors[table].buffer if tied else None
    )
    logits, head = sg.fc(x, vocab, "logits", weight=head_w)
    planted.lm_head = (sg.index, head)
    sg.outputs.append(logits)
    planted.model = mb.build()
    return planted


def plain_transformer(
    *,
    layers: int = 4,
    d: int = 32,
    width: int = 128,
    seq: int = 4,
    vocab: int = 1024,
    tied: bool = False,
    prefix: str = "transformer/layer_{i}",
) -> Planted:
    """One-subgraph decoder: embedding, [norm → attention → norm → MLP] × layers, LM head; every
    layer identical, one shared mask, no AltUp, LAuReL or per-layer embeddings."""
    mb = ModelBuilder("plain.tflite")
    sg = mb.subgraph("main")
    planted = Planted(model=None, decode=0)  # type: ignore[arg-type]
    tokens = sg.input("tokens", (1, seq), "int32")
    table = sg.const("embedding/table", (vocab, d))
    x = sg.tensor("embedding/rows", (1, seq, d))
    planted.embedding_gather = (0, sg.op("GATHER", [table, tokens], [x], axis=0))
    mask = sg.input("mask", (1, 1, seq, 16))
    for i in range(layers):
        p = prefix.format(i=i)
        h = sg.rmsnorm(x, f"{p}/ln_1")
        attn, softmax = _attention(sg, h, p, 4, 16, mask)
        planted.softmax_ops[i] = softmax
        x = sg.binary("ADD", x, attn, f"{p}/attn_residual")
        mlp_out, mlp_ops = _mlp(sg, sg.rmsnorm(x, f"{p}/ln_2"), p, width)
        planted.mlp_ops[i] = mlp_ops
        x = sg.binary("ADD", x, mlp_out, f"{p}/mlp_residual")
    x = sg.rmsnorm(x, "final_norm")
    head_w = sg.const(
        "lm_head/weights", (vocab, d), buffer=sg.tensors[table].buffer if tied else None
    )
    logits, head = sg.fc(x, vocab, "logits", weight=head_w)
    planted.lm_head = (0, head)
    sg.outputs.append(logits)
    planted.model = mb.build()
    return planted


def chain(n_ops: int = 6, name: str = "chain") -> SubgraphInfo:
    """t0 → op0 → t1 → op1 → … → t{n}; op i also reads a constant c{i}."""
    mb = ModelBuilder()
    sg = mb.subgraph(name)
    x = sg.input("t0", (1, 4))
    for i in range(n_ops):
        c = sg.const(f"c{i}", (4,), "float32", None)
        y = sg.tensor(f"t{i + 1}", (1, 4))
        sg.op("ADD", [x, c], [y])
        x = y
    sg.outputs.append(x)
    return mb.build().subgraphs[0]


def replace_tensor(sg: SubgraphInfo, index: int, **changes) -> SubgraphInfo:
    """A copy of `sg` with one tensor's fields changed (shape, name, dtype, quantization...)."""
    tensors = list(sg.tensors)
    tensors[index] = dataclasses.replace(tensors[index], **changes)
    return dataclasses.replace(sg, tensors=tuple(tensors))


def insert_after(sg: SubgraphInfo, producer: int, opcode: str = "NEG") -> SubgraphInfo:
    """A copy of `sg` with a unary op spliced in after op `producer`: its readers now read the
    new op's (unnamed) output."""
    t_in = sg.ops[producer].outputs[0]
    new_t = TensorInfo(len(sg.tensors), "", sg.tensors[t_in].shape, None, "float32", 0, 0)
    ops = []
    for op in sg.ops:
        if op.index != producer and t_in in op.inputs:
            inputs = tuple(new_t.index if t == t_in else t for t in op.inputs)
            op = dataclasses.replace(op, inputs=inputs)
        ops.append(op)
        if op.index == producer:
            ops.append(OpInfo(0, opcode, False, 1, (t_in,), (new_t.index,)))
    ops = [dataclasses.replace(op, index=i) for i, op in enumerate(ops)]
    return dataclasses.replace(sg, tensors=(*sg.tensors, new_t), ops=tuple(ops))
