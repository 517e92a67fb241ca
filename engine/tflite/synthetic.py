"""Small synthetic TFLite models, bundles and containers with known answers (tests and demo).

Every writer is deterministic (fixed seeds, fixed zip timestamps) and returns the path written.
The models are valid: `ai_edge_litert`'s Interpreter loads and runs each of them.

Its role since issue 18: a finding, a recovered config or a diff is evidence only on what Google's
converter writes, and those are checked on the converter-made samples (engine/tflite/converted,
tests/test_tflite_converted.py, test_tflite_recovered.py, test_tflite_diff_converted.py). This
module stays for what the converter cannot produce, or not in a test's time:
- files past 2 GB (`write_large_offset`: buffers behind Buffer.offset): test_tflite_reader.py and
  the `tflite_open` benchmark;
- types and layouts the converter's recipes here do not write (per-channel int4 packed, float16,
  per-tensor int8 in `write_quantized`), checked value by value against LiteRT's interpreter:
  test_tflite_reader.py;
- bundle and container layouts with known sections (`write_task_bundle`, `write_litertlm`,
  `gemma3n_sections`): test_tflite_bundles.py;
- malformed, mutated and crafted files (a valid base to damage): test_tflite_fuzz.py,
  test_tflite_budget.py, faults/tflite_inputs.py;
- a tiny, fast model for the CLI and its start-up budget (`write_mlp`, `write_demo_set`):
  test_tflite_cli.py, test_cli_startup.py, benchmarks/cli_startup.py;
- the Gemma-3n-shaped demo decoder (`write_gemma3n_like`, `GEMMA3N_LIKE`): planted ground truth for
  the findings' unit tests (test_tflite_findings.py) and for "no KV cache → attention unknown"
  (test_tflite_recovered.py), and the demo set (`write_demo_set` via samples.ensure_samples) the
  explorer lists when no converter sample is built.
It is not evidence that a detector works on real files: only the converter samples are.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from engine.atomic import atomic_path
from engine.tflite import builder as fb
from engine.tflite.bundles import LITERTLM_SECTION_TYPES, write_litertlm_container
from engine.tflite.graph import Quantization

# The ground truth of `write_gemma3n_like`, for tests and findings to check against.
GEMMA3N_LIKE: dict[str, Any] = {
    "seq": 8,
    "d_model": 32,
    "vocab": 64,
    "num_layers": 4,
    "ffn_widths": (64, 64, 96, 96),  # MatFormer: two nested widths
    "altup_streams": 4,
    "laurel_rank": 4,
    "per_layer_dim": 8,
    "local_layers": (0, 1, 2),  # sliding-window attention (window below)
    "global_layers": (3,),
    "sliding_window": 4,
    "embedding": "transformer/embedder/input_embedding",
    "lm_head": "transformer/lm_head/w",  # same buffer as the embedding (tied)
    "per_layer_table": "transformer/embedder/per_layer_embeddings",
}

_ZIP_TIME = (2025, 1, 1, 0, 0, 0)


class _Graph:
    """Accumulates tensors and operators of one subgraph under readable names."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, fb.TensorSpec] = {}
        self.ops: list[fb.OpSpec] = []

    def input(self, name: str, shape: tuple[int, ...], dtype: str = "float32") -> str:
        self.tensors[name] = fb.TensorSpec(name, shape, dtype)
        return name

    def const(self, name: str, data: Any, dtype: str = "float32", **kw: Any) -> str:
        array = np.asarray(data)
        self.tensors[name] = fb.TensorSpec(name, array.shape, dtype, data=array, **kw)
        return name

    def weight(self, name: str, shape: tuple[int, ...], scale: float | None = None) -> str:
        scale = 1.0 / np.sqrt(shape[-1]) if scale is None else scale
        return self.const(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def op(
        self,
        opcode: str,
        inputs: tuple[str | None, ...],
        out: str,
        shape: tuple[int, ...],
        dtype: str = "float32",
        **options: Any,
    ) -> str:
        self.tensors[out] = fb.TensorSpec(out, shape, dtype)
        self.ops.append(fb.OpSpec(opcode, inputs, (out,), options))
        return out

    def reshape(self, x: str, shape: tuple[int, ...], out: str) -> str:
        new_shape = self.const(f"{out}/shape", np.array(shape, dtype=np.int32), "int32")
        return self.op("RESHAPE", (x, new_shape), out, shape, new_shape=list(shape))

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def fc(self, x: str, w: str, out: str, bias: str | None = None, **options: Any) -> str:
        shape = (*self.shape_of(x)[:-1], self.shape_of(w)[0])
        return self.op("FULLY_CONNECTED", (x, w, bias), out, shape, keep_num_dims=True, **options)

    def subgraph(self, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> fb.SubgraphSpec:
        return fb.SubgraphSpec(self.name, list(self.tensors.values()), self.ops, inputs, outputs)


# -- plain models -------------------------------------------------------------------------------
def _mlp_spec() -> fb.ModelSpec:
    g = _Graph("main", seed=0)
    x = g.input("serving_default_x:0", (1, 8))
    h = g.op(
        "FULLY_CONNECTED",
        (x, g.weight("mlp/dense_1/kernel", (16, 8)), g.weight("mlp/dense_1/bias", (16,), 0.1)),
        "mlp/dense_1/Relu",
        (1, 16),
        fused_activation_function="RELU",
    )
    y = g.op(
        "FULLY_CONNECTED",
        (h, g.weight("mlp/dense_2/kernel", (4, 16)), g.weight("mlp/dense_2/bias", (4,), 0.1)),
        "mlp/dense_2/BiasAdd",
        (1, 4),
    )
    z = g.op("ADD", (y, g.weight("mlp/offset", (4,), 0.5)), "mlp/add", (1, 4))
    p = g.op("SOFTMAX", (z,), "StatefulPartitionedCall:0", (1, 4), beta=1.0)
    return fb.ModelSpec(
        [g.subgraph((x,), (p,))],
        [fb.SignatureSpec("serving_default", 0, {"x": x}, {"probs": p})],
        metadata={"min_runtime_version": b"1.5.0".ljust(16, b"\0")},
    )


def write_mlp(path: str | os.PathLike[str]) -> Path:
    """x (1, 8) → FULLY_CONNECTED+RELU (16) → FULLY_CONNECTED (4) → ADD → SOFTMAX."""
    return fb.write_model(path, _mlp_spec())


def write_large_offset(path: str | os.PathLike[str], offset: int = 2**31 + 4096) -> Path:
    """The MLP with every buffer stored past `offset` (Buffer.offset / size, the >2 GB layout).

    The gap is never written, so the file is sparse: about 8 KiB of disk for a 2 GB file.
    """
    return fb.write_model(path, _mlp_spec(), external_from=offset)


def write_multi_subgraph(path: str | os.PathLike[str]) -> Path:
    """Two subgraphs with one signature each: 'encode' (MUL, ADD) and 'decode' (FC, TANH)."""
    enc = _Graph("encode", seed=1)
    x = enc.input("encode_x", (1, 4))
    y = enc.op("MUL", (x, enc.weight("encode/scale", (4,), 1.0)), "encode/mul", (1, 4))
    y = enc.op("ADD", (y, enc.weight("encode/shift", (4,), 1.0)), "encode/out", (1, 4))
    dec = _Graph("decode", seed=2)
    z = dec.input("decode_z", (1, 4))
    w = dec.weight("decode/dense/kernel", (2, 4))
    h = dec.op("FULLY_CONNECTED", (z, w, None), "decode/dense", (1, 2))
    out = dec.op("TANH", (h,), "decode/out", (1, 2))
    spec = fb.ModelSpec(
        [enc.subgraph((x,), (y,)), dec.subgraph((z,), (out,))],
        [
            fb.SignatureSpec("encode", 0, {"x": x}, {"y": y}),
            fb.SignatureSpec("decode", 1, {"z": z}, {"out": out}),
        ],
    )
    return fb.write_model(path, spec)


def _quantize(w: np.ndarray, bits: int, axis: int) -> tuple[np.ndarray, Quantization]:
    """Symmetric per-channel quantization along `axis` (scales as float32)."""
    qmax = 2 ** (bits - 1) - 1
    other = tuple(i for i in range(w.ndim) if i != axis)
    scale = (np.abs(w).max(axis=other) / qmax).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -qmax - 1, qmax).astype(np.int8)
    zeros = (0,) * len(scale)
    return q, Quantization(tuple(scale.tolist()), zeros, quantized_dimension=axis)


def write_quantized(path: str | os.PathLike[str]) -> Path:
    """Weights stored as per-channel int8 (axis 0 and 1), per-channel int4 (packed), float16,
    an asymmetric uint8 bias and an int16 offset — each DEQUANTIZEd into float32 compute."""
    g = _Graph("main", seed=3)
    x = g.input("x", (1, 8))
    w = (g.rng.standard_normal((6, 8)) / 3).astype(np.float32)
    outs = []
    for name, bits in (("dense_int8", 8), ("dense_int4", 4)):
        q, quant = _quantize(w, bits, axis=0)
        dtype = "int8" if bits == 8 else "int4"
        wq = g.const(f"{name}/kernel", q, dtype, quantization=quant)
        wf = g.op("DEQUANTIZE", (wq,), f"{name}/kernel_dequant", (6, 8))
        outs.append(g.op("FULLY_CONNECTED", (x, wf, None), f"{name}/out", (1, 6)))
    w16 = g.const("dense_fp16/kernel", w.astype(np.float16), "float16")
    wf = g.op("DEQUANTIZE", (w16,), "dense_fp16/kernel_dequant", (6, 8))
    outs.append(g.op("FULLY_CONNECTED", (x, wf, None), "dense_fp16/out", (1, 6)))
    q, quant = _quantize(w.T.copy(), 8, axis=1)
    wq = g.const("matmul_int8/kernel", q, "int8", quantization=quant)
    wf = g.op("DEQUANTIZE", (wq,), "matmul_int8/kernel_dequant", (8, 6))
    outs.append(g.op("BATCH_MATMUL", (x, wf), "matmul_int8/out", (1, 6)))
    bias = g.const(
        "bias_uint8",
        np.arange(0, 240, 40, dtype=np.uint8),
        "uint8",
        quantization=Quantization((0.01,), (128,)),
    )
    offset = g.const(
        "offset_int16",
        np.array([-300, -100, 0, 100, 300, 1000], dtype=np.int16),
        "int16",
        quantization=Quantization((0.001,), (0,)),
    )
    y = outs[0]
    for i, extra in enumerate(
        (
            *outs[1:],
            g.op("DEQUANTIZE", (bias,), "bias_dequant", (6,)),
            g.op("DEQUANTIZE", (offset,), "offset_dequant", (6,)),
        )
    ):
        y = g.op("ADD", (y, extra), f"sum_{i}", (1, 6))
    # Constants no operator reads: other stored types the reader must decode.
    g.const("extra/int64", np.array([1, -2, 3 << 40], dtype=np.int64), "int64")
    g.const("extra/bool", np.array([True, False, True, True]), "bool")
    g.const("extra/int32", np.arange(-3, 3, dtype=np.int32).reshape(2, 3), "int32")
    spec = fb.ModelSpec(
        [g.subgraph((x,), (y,))], [fb.SignatureSpec("serving_default", 0, {"x": x}, {"y": y})]
    )
    return fb.write_model(path, spec)


# -- a Gemma-3n-shaped decoder ------------------------------------------------------------------
def _rms_norm(g: _Graph, x: str, prefix: str) -> str:
    shape = g.shape_of(x)
    scale = g.const(f"{prefix}/scale", 1 + 0.1 * g.rng.standard_normal(shape[-1:]).astype("f4"))
    sq = g.op("MUL", (x, x), f"{prefix}/square", shape)
    ms = g.op("MEAN", (sq, "const/last_axis"), f"{prefix}/mean", (*shape[:-1], 1), keep_dims=True)
    ms = g.op("ADD", (ms, "const/rms_eps"), f"{prefix}/add_eps", (*shape[:-1], 1))
    rs = g.op("RSQRT", (ms,), f"{prefix}/rsqrt", (*shape[:-1], 1))
    xn = g.op("MUL", (x, rs), f"{prefix}/normalized", shape)
    return g.op("MUL", (xn, scale), f"{prefix}/out", shape)


def _gemma3n_spec() -> fb.ModelSpec:
    c = GEMMA3N_LIKE
    s, d, v, k = c["seq"], c["d_model"], c["vocab"], c["altup_streams"]
    p = c["per_layer_dim"]
    n_layers = c["num_layers"]
    g = _Graph("prefill_decode", seed=4)
    tokens = g.input("tokens", (1, s), "int32")

    g.const("const/last_axis", np.array([2], dtype=np.int32), "int32")
    g.const("const/stream_axis", np.array([0], dtype=np.int32), "int32")
    g.const("const/rms_eps", np.float32(1e-6))
    g.const("const/active_stream", np.array([0], dtype=np.int32), "int32")
    g.const("const/one", np.float32(1.0))
    g.const("const/inv_sqrt2", np.float32(1 / np.sqrt(2)))
    g.const("const/perm_stream_seq", np.array([1, 0, 2], dtype=np.int32), "int32")
    g.const("const/perm_2d", np.array([1, 0], dtype=np.int32), "int32")
    g.const("altup/non_active_mask", np.array([0, 1, 1, 1], dtype=np.float32).reshape(k, 1, 1))
    pos = np.arange(s)
    causal = pos[None, :] <= pos[:, None]
    local = causal & (pos[:, None] - pos[None, :] < c["sliding_window"])
    for name, allowed in (("attn_mask/global_causal", causal), ("attn_mask/local_sliding", local)):
        g.const(name, np.where(allowed, 0.0, -1e4).astype(np.float32).reshape(1, s, s))

    emb = g.weight(c["embedding"], (v, d), 1.0)
    g.tensors[c["lm_head"]] = fb.TensorSpec(c["lm_head"], (v, d), share_buffer_with=emb)
    table = g.weight(c["per_layer_table"], (v, n_layers * p), 1.0)

    x0 = g.op("GATHER", (emb, tokens), "transformer/embedder/lookup", (1, s, d), axis=0)
    x0 = g.op(
        "MUL",
        (x0, g.const("const/embed_scale", np.float32(np.sqrt(d)))),
        "transformer/embedder/scaled",
        (1, s, d),
    )
    ple = g.op("GATHER", (table, tokens), "per_layer_embed/lookup", (1, s, n_layers * p), axis=0)
    ple = g.reshape(ple, (1, s, n_layers, p), "per_layer_embed/reshape")
    streams = [x0] + [
        g.fc(
            x0,
            g.weight(f"transformer/altup_projections_{j}/w", (d, d)),
            f"transformer/altup_projections_{j}/out",
        )
        for j in range(1, k)
    ]
    x = g.op("CONCATENATION", tuple(streams), "altup/streams_in", (k, s, d), axis=0)

    for i in range(n_layers):
        x = _gemma3n_layer(g, i, x, ple)

    mean = g.op(
        "MEAN",
        (x, "const/stream_axis"),
        "transformer/altup_unembed/mean",
        (1, s, d),
        keep_dims=True,
    )
    h = _rms_norm(g, mean, "transformer/final_norm")
    logits = g.fc(h, c["lm_head"], "transformer/lm_head/logits")
    cap = g.const("const/final_logit_softcap", np.float32(30.0))
    t = g.op("DIV", (logits, cap), "transformer/final_logit_softcap/div", (1, s, v))
    t = g.op("TANH", (t,), "transformer/final_logit_softcap/tanh", (1, s, v))
    out = g.op("MUL", (t, cap), "logits", (1, s, v))
    return fb.ModelSpec(
        [g.subgraph((tokens,), (out,))],
        [fb.SignatureSpec("prefill_decode", 0, {"tokens": tokens}, {"logits": out})],
        description="SubnetScope synthetic Gemma-3n-shaped decoder",
    )


def _gemma3n_layer(g: _Graph, i: int, x: str, ple: str) -> str:
    c = GEMMA3N_LIKE
    s, d, k, r, p = c["seq"], c["d_model"], c["altup_streams"], c["laurel_rank"], c["per_layer_dim"]
    width = c["ffn_widths"][i]
    L = f"layer_{i}"

    # AltUp predict: every stream is re-mixed with coefficients routed from the active stream.
    active = g.op(
        "GATHER", (x, "const/active_stream"), f"{L}/altup/predict/active", (1, s, d), axis=0
    )
    routed = _rms_norm(g, active, f"{L}/altup/router_norm")
    router = g.fc(
        routed, g.weight(f"{L}/altup/modality_router/w", (k, d)), f"{L}/altup/predict/router"
    )
    router = g.op("TANH", (router,), f"{L}/altup/predict/router_tanh", (1, s, k))
    coefs = g.fc(
        router,
        g.weight(f"{L}/altup/prediction_coefs/w", (k * k, k), 0.1),
        f"{L}/altup/predict/coefs_flat",
    )
    coefs = g.reshape(coefs, (s, k, k), f"{L}/altup/predict/coefs")
    xt = g.op("TRANSPOSE", (x, "const/perm_stream_seq"), f"{L}/altup/predict/streams_t", (s, k, d))
    mix = g.op("BATCH_MATMUL", (coefs, xt), f"{L}/altup/predict/mix", (s, k, d))
    mix = g.op("TRANSPOSE", (mix, "const/perm_stream_seq"), f"{L}/altup/predict/mix_t", (k, s, d))
    pred = g.op("ADD", (mix, x), f"{L}/altup/predict/predictions", (k, s, d))
    a = g.op(
        "GATHER",
        (pred, "const/active_stream"),
        f"{L}/altup/predict/active_prediction",
        (1, s, d),
        axis=0,
    )

    # Attention: sliding-window mask on local layers, full causal mask on global ones.
    xn = _rms_norm(g, a, f"{L}/pre_attention_norm")
    q = g.fc(xn, g.weight(f"{L}/attn/q_einsum/w", (d, d)), f"{L}/attn/q")
    kk = g.fc(xn, g.weight(f"{L}/attn/kv_einsum/k_w", (d, d)), f"{L}/attn/k")
    vv = g.fc(xn, g.weight(f"{L}/attn/kv_einsum/v_w", (d, d)), f"{L}/attn/v")
    scores = g.op("BATCH_MATMUL", (q, kk), f"{L}/attn/scores", (1, s, s), adj_y=True)
    scale = g.const(f"{L}/attn/scale", np.float32(1 / np.sqrt(d)))
    scores = g.op("MUL", (scores, scale), f"{L}/attn/scaled_scores", (1, s, s))
    kind, mask = (
        ("local_sliding", "attn_mask/local_sliding")
        if i in c["local_layers"]
        else ("global", "attn_mask/global_causal")
    )
    scores = g.op("ADD", (scores, mask), f"{L}/attn/{kind}/masked_scores", (1, s, s))
    probs = g.op("SOFTMAX", (scores,), f"{L}/attn/{kind}/probs", (1, s, s), beta=1.0)
    ctx = g.op("BATCH_MATMUL", (probs, vv), f"{L}/attn/context", (1, s, d))
    o = g.fc(ctx, g.weight(f"{L}/attn/attn_vec_einsum/w", (d, d)), f"{L}/attn/output")
    o = _rms_norm(g, o, f"{L}/post_attention_norm")
    h = g.op("ADD", (a, o), f"{L}/attn/residual", (1, s, d))

    # LAuReL: a rank-r residual side branch d → r → d.
    lo = g.fc(xn, g.weight(f"{L}/laurel/linear_left/w", (r, d)), f"{L}/laurel/left")
    lo = g.fc(lo, g.weight(f"{L}/laurel/linear_right/w", (d, r)), f"{L}/laurel/right")
    lo = _rms_norm(g, lo, f"{L}/laurel/post_laurel_norm")
    lo = g.op("ADD", (xn, lo), f"{L}/laurel/out", (1, s, d))
    h = g.op("ADD", (h, lo), f"{L}/laurel/attn_plus_laurel", (1, s, d))
    h = g.op("MUL", (h, "const/inv_sqrt2"), f"{L}/laurel/scaled", (1, s, d))

    # Gated FFN; its width differs between layers (MatFormer).
    fn = _rms_norm(g, h, f"{L}/pre_ffw_norm")
    gate = g.fc(fn, g.weight(f"{L}/mlp/gating_einsum/gate_w", (width, d)), f"{L}/mlp/gate")
    up = g.fc(fn, g.weight(f"{L}/mlp/gating_einsum/up_w", (width, d)), f"{L}/mlp/up")
    gate = g.op("GELU", (gate,), f"{L}/mlp/gelu", (1, s, width), approximate=True)
    gu = g.op("MUL", (gate, up), f"{L}/mlp/gated", (1, s, width))
    down = g.fc(gu, g.weight(f"{L}/mlp/linear/w", (d, width)), f"{L}/mlp/down")
    down = _rms_norm(g, down, f"{L}/post_ffw_norm")
    out = g.op("ADD", (h, down), f"{L}/ffw/residual", (1, s, d))

    # AltUp correct: spread the active stream's innovation over all streams.
    innov = g.op("SUB", (out, a), f"{L}/altup/correct/innovation", (1, s, d))
    cc = g.fc(
        router,
        g.weight(f"{L}/altup/correction_coefs/w", (k, k), 0.1),
        f"{L}/altup/correct/coefs_raw",
    )
    cc = g.op("ADD", (cc, "const/one"), f"{L}/altup/correct/coefs", (1, s, k))
    cc = g.reshape(cc, (s, k), f"{L}/altup/correct/coefs_2d")
    cc = g.op("TRANSPOSE", (cc, "const/perm_2d"), f"{L}/altup/correct/coefs_t", (k, s))
    cc = g.reshape(cc, (k, s, 1), f"{L}/altup/correct/coefs_3d")
    corr = g.op("MUL", (cc, innov), f"{L}/altup/correct/scaled_innovation", (k, s, d))
    corrected = g.op("ADD", (pred, corr), f"{L}/altup/correct/corrected", (k, s, d))

    # Per-layer embedding: this layer's slice of the per-layer table gates a d → p → d branch.
    idx = g.const(f"per_layer_embed/layer_{i}/index", np.array([i], dtype=np.int32), "int32")
    pl = g.op("GATHER", (ple, idx), f"per_layer_embed/layer_{i}/gather", (1, s, 1, p), axis=2)
    pl = g.reshape(pl, (1, s, p), f"per_layer_embed/layer_{i}")
    first = g.op(
        "GATHER",
        (corrected, "const/active_stream"),
        f"{L}/per_layer/first_prediction",
        (1, s, d),
        axis=0,
    )
    pg = g.fc(first, g.weight(f"{L}/per_layer_input_gate/w", (p, d)), f"{L}/per_layer/gate")
    pg = g.op("GELU", (pg,), f"{L}/per_layer/gelu", (1, s, p), approximate=True)
    pg = g.op("MUL", (pg, pl), f"{L}/per_layer/gated", (1, s, p))
    pj = g.fc(pg, g.weight(f"{L}/per_layer_projection/w", (d, p)), f"{L}/per_layer/projection")
    pj = _rms_norm(g, pj, f"{L}/post_per_layer_input_norm")
    pj = g.op("MUL", (pj, "altup/non_active_mask"), f"{L}/per_layer/to_streams", (k, s, d))
    return g.op("ADD", (corrected, pj), f"{L}/output_streams", (k, s, d))


def write_gemma3n_like(path: str | os.PathLike[str]) -> Path:
    """A 4-layer decoder with Gemma-3n's structures (see GEMMA3N_LIKE for the known answers):
    MatFormer FFN widths, AltUp predict/correct over 4 streams, LAuReL, per-layer embeddings,
    local sliding-window vs global attention, and an LM head sharing the embedding's buffer."""
    return fb.write_model(path, _gemma3n_spec())


def _lookup_spec(name: str, table_name: str, table: np.ndarray) -> fb.ModelSpec:
    """A one-op model: tokens → GATHER from `table` (the shape of the .task embedder sections)."""
    g = _Graph(name, seed=5)
    seq = GEMMA3N_LIKE["seq"]
    tokens = g.input("tokens", (1, seq), "int32")
    t = g.const(table_name, table)
    out = g.op("GATHER", (t, tokens), "embeddings", (1, seq, table.shape[1]), axis=0)
    return fb.ModelSpec(
        [g.subgraph((tokens,), (out,))],
        [fb.SignatureSpec(name, 0, {"tokens": tokens}, {"embeddings": out})],
    )


def gemma3n_sections() -> dict[str, bytes]:
    """The sections of a Gemma-3n-like .task: decoder, embedders (the same tables as the
    decoder's, as in the real bundle), tokenizer and metadata placeholders."""
    decoder = _gemma3n_spec()
    consts = {t.name: t.data for t in decoder.subgraphs[0].tensors if t.data is not None}
    c = GEMMA3N_LIKE
    embedder = _lookup_spec("embedder", c["embedding"], np.asarray(consts[c["embedding"]]))
    per_layer = _lookup_spec(
        "per_layer_embedder", c["per_layer_table"], np.asarray(consts[c["per_layer_table"]])
    )
    return {
        "TF_LITE_PREFILL_DECODE": fb.build_model(decoder)[0],
        "TF_LITE_EMBEDDER": fb.build_model(embedder)[0],
        "TF_LITE_PER_LAYER_EMBEDDER": fb.build_model(per_layer)[0],
        "TOKENIZER_MODEL": b"synthetic sentencepiece placeholder\n" * 4,
        "METADATA": b'{"model": "gemma3n-like", "layers": 4}',
    }


# -- bundles and containers ---------------------------------------------------------------------
def write_task_bundle(
    path: str | os.PathLike[str],
    sections: dict[str, bytes] | None = None,
    *,
    deflate: tuple[str, ...] = (),
) -> Path:
    """A MediaPipe-style .task zip: one STORED member per section (names such as
    TF_LITE_PREFILL_DECODE, TOKENIZER_MODEL, METADATA); `deflate` names members to compress."""
    sections = gemma3n_sections() if sections is None else sections
    path = Path(path)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name, data in sections.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            zf.writestr(info, data)
    return path


def write_litertlm(
    path: str | os.PathLike[str], sections: list[tuple[str, bytes, dict[str, str]]] | None = None
) -> Path:
    """A LiteRT-LM container: `sections` are (data type, bytes, metadata items), data types as in
    LiteRT-LM's AnySectionDataType ('TFLiteModel', 'SP_Tokenizer', 'LlmMetadataProto', ...)."""
    if sections is None:
        parts = gemma3n_sections()
        sections = [
            (
                "TFLiteModel",
                parts["TF_LITE_PREFILL_DECODE"],
                {"model_type": "tf_lite_prefill_decode"},
            ),
            ("TFLiteModel", parts["TF_LITE_EMBEDDER"], {"model_type": "tf_lite_embedder"}),
            (
                "TFLiteModel",
                parts["TF_LITE_PER_LAYER_EMBEDDER"],
                {"model_type": "tf_lite_per_layer_embedder"},
            ),
            ("SP_Tokenizer", parts["TOKENIZER_MODEL"], {}),
            ("LlmMetadataProto", parts["METADATA"], {}),
        ]
    for kind, _, _ in sections:
        if kind not in LITERTLM_SECTION_TYPES:
            raise ValueError(f"unknown LiteRT-LM section type {kind!r}")
    return write_litertlm_container(path, sections, {"author": "SubnetScope synthetic"})


def write_demo_set(folder: str | os.PathLike[str], *, large: bool = False) -> dict[str, Path]:
    """Every synthetic file in `folder` (the >2 GB sparse file only when `large`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "mlp": write_mlp(folder / "mlp.tflite"),
        "multi_subgraph": write_multi_subgraph(folder / "multi_subgraph.tflite"),
        "quantized": write_quantized(folder / "quantized.tflite"),
        "gemma3n_like": write_gemma3n_like(folder / "gemma3n_like.tflite"),
        "task": write_task_bundle(folder / "gemma3n_like.task"),
        "litertlm": write_litertlm(folder / "gemma3n_like.litertlm"),
    }
    if large:
        out["large_offset"] = write_large_offset(folder / "large_offset.tflite")
    return out
