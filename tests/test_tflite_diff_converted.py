"""The graph diff on converter-made pairs reads as the change that was made: SmolLM2-135M fp32 →
int8 weights is "weights quantized" and nothing else; Qwen2 3 → 4 layers is "one decoder layer
added (layer 3)" and nothing else (issue 18, item 4). Counts are checked against the source
configs, not only against numbers measured once. The first two tests need no sample: the same
summary on hand-built graphs, so CI without the converter still checks it."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from functools import cache

import pytest

from engine.tflite import open_file
from engine.tflite.diff import diff_graphs, op_layers
from engine.tflite.diff_summary import DiffSummary, summarize
from engine.tflite.graph import ModelInfo, Quantization, SubgraphInfo
from tests.converted_support import converted
from tests.tflite_graphs import plain_transformer

PROJECTIONS = 7  # q, k, v, o, gate, up, down: one FULLY_CONNECTED weight each per layer


def _with_fc_weights(model: ModelInfo, dtype: str) -> ModelInfo:
    """`model` with every MLP weight stored as `dtype` (int8: per-channel, a quarter the bytes)."""
    sg = model.subgraphs[0]
    int8 = dtype == "int8"
    tensors = tuple(
        dataclasses.replace(
            t,
            dtype=dtype,
            quantization=Quantization((0.1,) * t.shape[0], (0,) * t.shape[0]) if int8 else None,
            buffer_bytes=t.numel * (1 if int8 else 4),
        )
        if t.is_constant and "/mlp/" in t.name
        else t
        for t in sg.tensors
    )
    return dataclasses.replace(model, subgraphs=(dataclasses.replace(sg, tensors=tensors),))


def test_hand_built_layer_added_and_weights_quantized() -> None:
    three, four = plain_transformer(layers=3).model, plain_transformer(layers=4).model
    told = summarize(three, four, diff_graphs(three, four))
    assert told.layers_added == (3,) and told.nothing_else
    assert told.headline.startswith("one layer added (layer 3): +27 ops, +38 tensors (9 weights")
    # the final norm's two ops now read layer 3's residual stream
    assert len(told.ops_rewired) == 2
    fp32 = _with_fc_weights(three, "float32")
    int8 = _with_fc_weights(three, "int8")
    told = summarize(fp32, int8, diff_graphs(fp32, int8))
    (w,) = told.weights
    assert (w.readers, w.buffers, w.bytes_a) == (("FULLY_CONNECTED",), 3 * 3, 4 * w.bytes_b)
    assert told.headline == (
        "weights quantized: 9 FULLY_CONNECTED weight tensors float32 → int8 (per-channel); "
        "no op changed type or gained a DEQUANTIZE; nothing else changed"
    )


def test_what_no_bucket_explains_is_not_called_nothing_else() -> None:
    model = plain_transformer(layers=2).model
    sg = model.subgraphs[0]
    target = next(i for i, t in enumerate(sg.tensors) if t.name.endswith("attn_residual"))
    tensors = list(sg.tensors)
    tensors[target] = dataclasses.replace(tensors[target], shape=(1, 4, 33))
    b = dataclasses.replace(model, subgraphs=(dataclasses.replace(sg, tensors=tuple(tensors)),))
    told = summarize(model, b, diff_graphs(model, b))
    assert not told.nothing_else and len(told.other) == 1
    assert told.headline.endswith("1 other change")
    assert told.lines[-1].startswith("other: tensor transformer/layer_")


@cache
def _info(name: str) -> ModelInfo:
    with open_file(converted(name).tflite).open() as reader:
        return reader.info()


def _config(name: str) -> dict:
    return json.loads((converted(name).hf_folder() / "config.json").read_text())


def _sub(info: ModelInfo, name: str) -> SubgraphInfo:
    return next(sg for sg in info.subgraphs if sg.name == name)


def _layer_ops(info: ModelInfo, signature: str) -> Counter:
    return Counter(x for x in op_layers(_sub(info, signature)) if x is not None)


@cache
def _told(a: str, b: str) -> tuple[DiffSummary, object]:
    ia, ib = _info(a), _info(b)
    d = diff_graphs(ia, ib)
    return summarize(ia, ib, d), d


@pytest.fixture(scope="module")
def quantized() -> tuple[DiffSummary, object]:
    return _told("smollm2-135m-fp32", "smollm2-135m-int8")


@pytest.fixture(scope="module")
def grown() -> tuple[DiffSummary, object]:
    return _told("qwen2-tiny", "qwen2-tiny-4layers")


def test_int8_weights_read_as_weights_quantized_and_nothing_else(quantized) -> None:
    told, d = quantized
    layers = _config("smollm2-135m-fp32")["num_hidden_layers"]  # 30
    fc, embedding = told.weights
    assert (fc.readers, fc.dtype_a, fc.dtype_b, fc.quantization_b) == (
        ("FULLY_CONNECTED",),
        "float32",
        "int8",
        "per-channel",
    )
    assert fc.buffers == PROJECTIONS * layers == 210
    # decode reads all 210; prefill 29 whole layers + the last layer's K and V projections (its
    # other outputs are dead code in a signature without logits, and the converter drops them)
    assert fc.tensors == 210 + PROJECTIONS * (layers - 1) + 2 == 415
    # the tied table: the embedding lookup and the decode head read one buffer
    assert embedding.readers == ("EMBEDDING_LOOKUP", "FULLY_CONNECTED")
    assert (embedding.buffers, embedding.tensors) == (1, 2)
    for w in told.weights:
        assert w.bytes_a == 4 * w.bytes_b  # float32 → int8, byte for byte a quarter
    assert d.summary["ops"] == {"added": 0, "removed": 0, "changed": 0, "same": 3329}
    assert d.summary["tensors"]["changed"] == fc.tensors + embedding.tensors == 417
    assert (told.ops_retyped, told.dequantize_added, told.ops_added) == ({}, 0, 0)
    assert told.layers_added == told.layers_removed == ()
    assert told.tensors_renamed == 0 and told.nothing_else
    assert (told.size_a, told.size_b) == (
        converted("smollm2-135m-fp32").tflite.stat().st_size,
        converted("smollm2-135m-int8").tflite.stat().st_size,
    )
    assert told.headline == (
        "weights quantized: 210 FULLY_CONNECTED weight tensors float32 → int8 (per-channel); "
        "1 EMBEDDING_LOOKUP + FULLY_CONNECTED weight tensor float32 → int8 (per-channel); "
        "no op changed type or gained a DEQUANTIZE; size 540.6 MB → 142.0 MB; nothing else changed"
    )


def test_one_more_layer_reads_as_one_decoder_layer_added(grown) -> None:
    told, d = grown
    a, b = _info("qwen2-tiny"), _info("qwen2-tiny-4layers")
    n_a = _config("qwen2-tiny")["num_hidden_layers"]
    n_b = _config("qwen2-tiny-4layers")["num_hidden_layers"]
    assert (n_a, n_b) == (3, 4)
    assert told.layers_added == (n_a,) and told.layers_removed == ()
    assert told.kv_cache_inputs == {"prefill_32": (2 * n_a, 2 * n_b), "decode": (2 * n_a, 2 * n_b)}
    changes = {(c.subgraph, c.layer): (c.ops_a, c.ops_b) for c in told.layer_changes}
    # a whole layer as layer 1 has it (layer 0 also builds what the later ones share: the mask)
    decode_layer = _layer_ops(b, "decode")[1]  # every decode layer is whole: 38 ops
    prefill_layer = _layer_ops(b, "prefill_32")[1]  # 43 ops
    last_kv_only = _layer_ops(a, "prefill_32")[n_a - 1]  # prefill's last layer: K/V only, 14
    assert changes == {
        ("decode", 3): (0, decode_layer),
        # A's last prefill layer becomes whole; the new last one is K/V only, as A's was
        ("prefill_32", 2): (last_kv_only, prefill_layer),
        ("prefill_32", 3): (0, last_kv_only),
    }
    assert (decode_layer, prefill_layer, last_kv_only) == (38, 43, 14)
    # besides the layers' ops: one K and one V cache update per signature, and the 4 norm
    # decompositions the new layer calls (decode 2, prefill 1 for layer 3 + 1 for layer 2's MLP)
    assert told.subgraphs_added == {"odml.rms_norm": 4}
    # the other decompositions pair through their callers though their numbers shift (impl_4 →
    # impl_6, …); the 29 renamed tensors are theirs (2 each) and prefill layer 2's `;N` locations
    assert (told.subgraphs_renumbered, told.tensors_renamed) == (7, 29)
    composite_ops = sum(
        len(b.subgraphs[int(i)].ops) for i in d.subgraphs.query("status == 'added'")["index_b"]
    )
    decode_added = decode_layer + 2
    prefill_added = (prefill_layer - last_kv_only) + last_kv_only + 2
    assert told.ops_added == decode_added + prefill_added + composite_ops == 40 + 45 + 26 == 111
    # the 7 projections are new buffers; the norms' weights (all ones) and the biases share the
    # converter's deduplicated buffers with the other layers
    layer1 = {
        t.buffer: t.buffer_bytes
        for op, layer in zip(_sub(b, "decode").ops, op_layers(_sub(b, "decode")), strict=True)
        if layer == 1 and op.opcode == "FULLY_CONNECTED"
        for t in (_sub(b, "decode").tensors[op.inputs[1]],)
    }
    assert told.weights_added == PROJECTIONS == len(layer1)
    assert told.weight_bytes_added == sum(layer1.values())
    # nothing else: the final norm reads the new layer; names renumbered, content equal
    assert (
        len(told.ops_rewired) == 1 and "now reads the added layer's output" in told.ops_rewired[0]
    )
    assert d.summary["ops"]["changed"] == 1 and d.summary["ops"]["removed"] == 0
    assert set(d.changed_tensors().query("status == 'changed'")["changes"]) == {"name"}
    assert told.weights == () and told.ops_retyped == {} and told.nothing_else
    assert told.headline.startswith(
        "one decoder layer added (layer 3): +111 ops, +147 tensors (7 weights, 172.0 KB); "
        "kv cache inputs 6 → 8; size 25.9 MB → 26.2 MB; nothing else changed"
    )


def test_the_other_way_round_is_one_layer_removed(grown) -> None:
    told_ab, _ = grown
    told, _ = _told("qwen2-tiny-4layers", "qwen2-tiny")
    assert told.layers_removed == (3,) and told.layers_added == ()
    assert told.kv_cache_inputs == {"prefill_32": (8, 6), "decode": (8, 6)}
    assert (told.ops_removed, told.tensors_removed) == (told_ab.ops_added, told_ab.tensors_added)
    assert told.nothing_else
    assert told.headline.startswith("one decoder layer removed (layer 3): −111 ops, −147 tensors")


def test_a_converted_model_against_itself_is_identical() -> None:
    told, d = _told("qwen2-tiny", "qwen2-tiny")
    assert d.identical and told.headline == "identical graphs" and told.lines == ()
