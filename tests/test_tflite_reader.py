"""engine.tflite reader: graphs and values checked against LiteRT's own interpreter."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from engine.tflite import TFLiteError, dump_tensors, open_file, open_tflite, synthetic
from engine.tflite import builder as fb
from engine.tflite.graph import Quantization
from engine.tflite.reader import TFLiteReader
from engine.tflite.values import pack_bits, unpack_bits
from tests.optional import need
from tests.tflite_support import MEDIAPIPE, mediapipe_names, need_mediapipe

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synthetic.write_demo_set(tmp_path_factory.mktemp("tflite_demo"))


def interpreter(path: Path, **kw) -> Interpreter:
    """LiteRT's interpreter (a pinned requirement: imported plainly, so a broken install fails
    the tests that compare with it, and only those)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without XNNPACK, intermediate tensors keep their values for comparison.
    return Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        **kw,
    )


def default_interpreter(path: Path) -> Interpreter:
    """LiteRT's interpreter with its default delegates, as an app would run the model."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path))


def assert_matches_interpreter(reader: TFLiteReader, path: Path) -> int:
    """Every tensor of subgraph 0: name, shape, signature, dtype, quantization, stored values.
    Returns how many constant tensors were compared by value."""
    sg = reader.info().subgraphs[0]
    it = interpreter(path)
    details = [d for d in it.get_tensor_details() if d["index"] < len(sg.tensors)]
    assert len(details) == len(sg.tensors)
    compared = 0
    for d in details:
        t = sg.tensors[d["index"]]
        assert d["name"] == t.name
        assert list(d["shape"]) == list(t.shape)
        signature = t.shape_signature if t.shape_signature is not None else t.shape
        assert list(d["shape_signature"]) == list(signature)
        expected = {"int4": "int8", "bool": "bool"}.get(t.dtype, t.dtype)
        assert np.dtype(d["dtype"]).name == expected
        qp, q = d["quantization_parameters"], t.quantization
        scales = np.asarray(q.scale if q else (), dtype=np.float32)
        np.testing.assert_array_equal(qp["scales"].astype(np.float32), scales)
        np.testing.assert_array_equal(qp["zero_points"], np.asarray(q.zero_point if q else ()))
        if q is not None:
            assert qp["quantized_dimension"] == q.quantized_dimension
        if t.buffer_bytes:
            stored = it.get_tensor(d["index"])
            if t.sparsity is None:
                np.testing.assert_array_equal(
                    reader.tensor_array(0, t.index, dequantize=False), stored
                )
            else:  # the interpreter hands back the stored (compressed) values
                raw = np.frombuffer(reader.tensor_bytes(0, t.index), dtype=stored.dtype)
                np.testing.assert_array_equal(raw, stored)
            compared += 1
    return compared


def test_mlp_matches_the_interpreter_and_runs(demo: dict[str, Path]) -> None:
    with open_tflite(demo["mlp"]) as reader:
        info = reader.info()
        assert assert_matches_interpreter(reader, demo["mlp"]) == 5
        sg = info.subgraphs[0]
        assert [op.opcode for op in sg.ops] == [
            "FULLY_CONNECTED",
            "FULLY_CONNECTED",
            "ADD",
            "SOFTMAX",
        ]
        assert sg.ops[0].options["fused_activation_function"] == "RELU"
        assert sg.ops[3].options == {"beta": 1.0}
        assert info.metadata == {"min_runtime_version": 16}
        assert bytes(reader.metadata_bytes("min_runtime_version")).rstrip(b"\0") == b"1.5.0"
        (sig,) = info.signatures
        assert (sig.key, sig.inputs, sig.outputs) == ("serving_default", {"x": 0}, {"probs": 9})
        w1 = reader.tensor_array(0, "mlp/dense_1/kernel")
        b1 = reader.tensor_array(0, "mlp/dense_1/bias")
        w2 = reader.tensor_array(0, "mlp/dense_2/kernel")
        b2 = reader.tensor_array(0, "mlp/dense_2/bias")
        offset = reader.tensor_array(0, "mlp/offset")
    it = default_interpreter(demo["mlp"])
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    probs = it.get_signature_runner("serving_default")(x=x)["probs"]
    z = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2 + offset
    np.testing.assert_allclose(probs, np.exp(z) / np.exp(z).sum(), rtol=1e-5)


def test_multi_subgraph_signatures(demo: dict[str, Path]) -> None:
    reader = open_tflite(demo["multi_subgraph"])
    info = reader.info()
    assert [sg.name for sg in info.subgraphs] == ["encode", "decode"]
    assert [(s.key, s.subgraph) for s in info.signatures] == [("encode", 0), ("decode", 1)]
    assert info.subgraphs[1].ops[0].inputs[2] == -1  # omitted bias
    it = default_interpreter(demo["multi_subgraph"])
    assert set(it.get_signature_list()) == {"encode", "decode"}
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    y = it.get_signature_runner("encode")(x=x)["y"]
    expected = x * reader.tensor_array(0, "encode/scale") + reader.tensor_array(0, "encode/shift")
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    out = it.get_signature_runner("decode")(z=y)["out"]
    np.testing.assert_allclose(
        out, np.tanh(y @ reader.tensor_array(1, "decode/dense/kernel").T), rtol=1e-5
    )


def test_quantized_weights_dequantize_like_the_interpreter(demo: dict[str, Path]) -> None:
    path = demo["quantized"]
    reader = open_tflite(path)
    assert assert_matches_interpreter(reader, path) == 9
    sg = reader.info().subgraphs[0]
    by_name = {t.name: t for t in sg.tensors}
    int4 = by_name["dense_int4/kernel"]
    assert (int4.dtype, int4.buffer_bytes, int4.quantization.per_channel) == ("int4", 24, True)
    assert by_name["matmul_int8/kernel"].quantization.quantized_dimension == 1
    it = interpreter(path, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.ones((1, 8), dtype=np.float32))
    it.invoke()
    for op in sg.ops:
        if op.opcode != "DEQUANTIZE":
            continue
        mine = reader.tensor_array(0, op.inputs[0])
        assert mine.dtype == np.float32  # float32 scales never upcast to float64
        np.testing.assert_array_equal(mine, it.get_tensor(op.outputs[0]))
    assert reader.tensor_array(0, "extra/int64").tolist() == [1, -2, 3 << 40]
    assert reader.tensor_array(0, "extra/bool").tolist() == [True, False, True, True]
    assert reader.tensor_array(0, "dense_fp16/kernel", dequantize=False).dtype == np.float16


def test_int4_nibbles_are_low_first_and_sign_extended() -> None:
    raw = np.array([0x7F, 0x08, 0xF1], dtype=np.uint8)
    assert unpack_bits(raw, 4, 6, signed=True).tolist() == [-1, 7, -8, 0, 1, -1]
    assert unpack_bits(raw, 4, 5, signed=False).tolist() == [15, 7, 8, 0, 1]
    values = np.arange(-8, 8, dtype=np.int8)
    assert unpack_bits(
        np.frombuffer(pack_bits(values, 4), np.uint8), 4, 16, signed=True
    ).tolist() == (values.tolist())


def test_per_channel_dequantize_along_a_middle_axis(tmp_path: Path) -> None:
    q = np.arange(24, dtype=np.int8).reshape(2, 3, 4) - 12
    quant = Quantization((0.5, 0.25, 2.0), (0, 1, -1), quantized_dimension=1)
    spec = fb.ModelSpec(
        [
            fb.SubgraphSpec(
                "main",
                [fb.TensorSpec("w", (2, 3, 4), "int8", data=q, quantization=quant)],
                [],
                (),
                (),
            )
        ]
    )
    reader = open_tflite(fb.write_model(tmp_path / "q.tflite", spec))
    got = reader.tensor_array(0, "w")
    scale = np.array([0.5, 0.25, 2.0], np.float32).reshape(1, 3, 1)
    zero = np.array([0, 1, -1], np.float32).reshape(1, 3, 1)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (q.astype(np.float32) - zero) * scale)


def test_gemma3n_like_runs_and_ties_its_lm_head(demo: dict[str, Path]) -> None:
    facts = synthetic.GEMMA3N_LIKE
    reader = open_tflite(demo["gemma3n_like"])
    sg = reader.info().subgraphs[0]
    by_name = {t.name: t for t in sg.tensors}
    emb, head = by_name[facts["embedding"]], by_name[facts["lm_head"]]
    assert emb.buffer == head.buffer and emb.buffer_bytes > 0
    users = {
        sg.ops[i].opcode
        for i in range(len(sg.ops))
        for t in (emb, head)
        if t.index in sg.ops[i].inputs
    }
    assert users == {"GATHER", "FULLY_CONNECTED"}
    widths = [by_name[f"layer_{i}/mlp/gating_einsum/up_w"].shape[0] for i in range(4)]
    assert tuple(widths) == facts["ffn_widths"]
    assert by_name["layer_0/laurel/linear_left/w"].shape == (facts["laurel_rank"], facts["d_model"])
    assert by_name["altup/streams_in"].shape[0] == facts["altup_streams"]
    assert all(
        f"layer_{i}/attn/local_sliding/masked_scores" in by_name for i in facts["local_layers"]
    )
    assert all(f"layer_{i}/attn/global/masked_scores" in by_name for i in facts["global_layers"])
    assert assert_matches_interpreter(reader, demo["gemma3n_like"]) > 50
    it = default_interpreter(demo["gemma3n_like"])
    tokens = np.arange(facts["seq"], dtype=np.int32).reshape(1, -1)
    logits = it.get_signature_runner("prefill_decode")(tokens=tokens)["logits"]
    assert logits.shape == (1, facts["seq"], facts["vocab"]) and np.isfinite(logits).all()


def test_writers_are_deterministic(tmp_path: Path) -> None:
    a = synthetic.write_demo_set(tmp_path / "a")
    b = synthetic.write_demo_set(tmp_path / "b")
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key


def rss_bytes() -> int:
    """Resident memory from Linux's /proc (skips, or fails where required, without it)."""
    need("proc", os.path.exists("/proc/self/statm"), "resident memory is read from /proc")
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_buffers_past_2gb_open_fast_and_stay_unread(tmp_path: Path) -> None:
    path = synthetic.write_large_offset(tmp_path / "large.tflite")
    assert path.stat().st_size > 2**31
    assert path.stat().st_blocks * 512 < 1 << 20  # sparse: the gap takes no disk
    before = rss_bytes()
    start = time.perf_counter()
    with open_tflite(path) as reader:
        info = reader.info()
        kernel = reader.tensor_array(0, "mlp/dense_1/kernel")
        where, size = reader.buffer_location(info.subgraphs[0].tensors[1].buffer)
        elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert rss_bytes() - before < 64 << 20
    assert where > 2**31 and size == 16 * 8 * 4
    small = open_tflite(synthetic.write_mlp(tmp_path / "mlp.tflite"))
    np.testing.assert_array_equal(kernel, small.tensor_array(0, "mlp/dense_1/kernel"))
    # LiteRT accepts the offset/size buffer layout too.
    it = default_interpreter(path)
    out = it.get_signature_runner("serving_default")(x=np.zeros((1, 8), np.float32))["probs"]
    assert out.shape == (1, 4)


def test_info_reads_metadata_only(tmp_path: Path) -> None:
    big = np.zeros((4096, 4096), dtype=np.float32)  # 64 MiB inline
    spec = fb.ModelSpec(
        [fb.SubgraphSpec("main", [fb.TensorSpec("big", big.shape, data=big)], [], (), ())]
    )
    path = fb.write_model(tmp_path / "big.tflite", spec)
    before = rss_bytes()
    reader = open_tflite(path)
    assert reader.info().subgraphs[0].tensors[0].buffer_bytes == big.nbytes
    assert rss_bytes() - before < 16 << 20
    view = reader.tensor_bytes(0, "big")
    assert isinstance(view, memoryview) and view.readonly and len(view) == big.nbytes
    array = reader.tensor_array(0, "big")
    assert not array.flags.owndata and not array.flags.writeable  # a view of the mapping


@pytest.mark.parametrize("name", mediapipe_names())
def test_mediapipe_models_match_the_interpreter(name: str) -> None:
    need_mediapipe()
    path = MEDIAPIPE / name
    with open_tflite(path) as reader:
        assert assert_matches_interpreter(reader, path) > 0
        for t in reader.info().subgraphs[0].tensors:
            if t.sparsity is not None:  # densified like LiteRT's DENSIFY
                assert reader.tensor_array(0, t.index).shape == t.shape


def test_sparse_tensors_densify_like_the_interpreter() -> None:
    need_mediapipe()
    path = MEDIAPIPE / "face_detection_full_range_sparse.tflite"
    reader = open_tflite(path)
    sg = reader.info().subgraphs[0]
    it = interpreter(path, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    (inp,) = it.get_input_details()
    it.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=np.float32))
    it.invoke()
    densify = [op for op in sg.ops if op.opcode == "DENSIFY"]
    assert len(densify) > 10
    for op in densify:
        np.testing.assert_array_equal(
            reader.tensor_array(0, op.inputs[0], dequantize=False), it.get_tensor(op.outputs[0])
        )


def test_dump_npy_and_safetensors_round_trip(demo: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    reader = open_tflite(demo["quantized"])
    written = dump_tensors(reader, pattern=r"kernel$", out=tmp_path / "npy")
    assert set(written) == {
        "dense_int8/kernel",
        "dense_int4/kernel",
        "dense_fp16/kernel",
        "matmul_int8/kernel",
    }
    for key, path in written.items():
        np.testing.assert_array_equal(np.load(path), reader.tensor_array(0, key))
    index = json.loads((tmp_path / "npy" / "tensors.json").read_text())
    assert {e["name"] for e in index["tensors"]} == set(written)
    assert {e["dtype"] for e in index["tensors"]} == {"float32"}

    out = tmp_path / "all.safetensors"
    written = dump_tensors(demo["quantized"], all=True, out=out)
    loaded = load_file(out)
    assert set(loaded) == set(written) and len(loaded) == 9
    for key, array in loaded.items():
        np.testing.assert_array_equal(array, reader.tensor_array(0, key))
    raw = load_file(
        dump_tensors(reader, names=["dense_int4/kernel"], out=tmp_path / "r.safetensors", raw=True)[
            "dense_int4/kernel"
        ]
    )
    assert raw["dense_int4/kernel"].dtype == np.int8


def test_dump_from_a_bundle_section_and_its_errors(demo: dict[str, Path], tmp_path: Path) -> None:
    file = open_file(demo["task"])
    with pytest.raises(TFLiteError, match="choose a section"):
        dump_tensors(file, all=True, out=tmp_path / "x")
    written = dump_tensors(file, section="TF_LITE_EMBEDDER", all=True, out=tmp_path / "emb")
    assert list(written) == [synthetic.GEMMA3N_LIKE["embedding"]]
    with pytest.raises(TFLiteError, match="no tensor named"):
        dump_tensors(demo["mlp"], names=["nope"], out=tmp_path / "y")
    with pytest.raises(TFLiteError, match="no constant"):
        dump_tensors(demo["mlp"], names=["mlp/add"], out=tmp_path / "y")
    with pytest.raises(TFLiteError, match="matches"):
        dump_tensors(demo["mlp"], pattern="^zzz", out=tmp_path / "y")
    with pytest.raises(TFLiteError, match="regular expression"):
        dump_tensors(demo["mlp"], pattern="(", out=tmp_path / "y")


def test_vtable_slots_agree_with_the_generated_accessors(demo: dict[str, Path]) -> None:
    import tflite

    from engine.tflite import reader as rd

    model = tflite.Model.GetRootAsModel(demo["quantized"].read_bytes(), 0)
    sg = model.Subgraphs(0)
    op = sg.Operators(0)
    tensor = next(sg.Tensors(i) for i in range(sg.TensorsLength()) if sg.Tensors(i).Quantization())
    q = tensor.Quantization()
    pairs = [
        (model._tab, rd._MODEL_OPCODES, model.OperatorCodesLength()),
        (model._tab, rd._MODEL_SUBGRAPHS, model.SubgraphsLength()),
        (model._tab, rd._MODEL_BUFFERS, model.BuffersLength()),
        (model._tab, rd._MODEL_SIGNATURES, model.SignatureDefsLength()),
        (sg._tab, rd._SG_TENSORS, sg.TensorsLength()),
        (sg._tab, rd._SG_OPERATORS, sg.OperatorsLength()),
        (sg._tab, rd._SG_INPUTS, sg.InputsLength()),
        (sg._tab, rd._SG_OUTPUTS, sg.OutputsLength()),
        (op._tab, rd._OP_INPUTS, op.InputsLength()),
        (op._tab, rd._OP_OUTPUTS, op.OutputsLength()),
        (tensor._tab, rd._TENSOR_SHAPE, tensor.ShapeLength()),
        (q._tab, rd._Q_SCALE, q.ScaleLength()),
        (q._tab, rd._Q_ZERO_POINT, q.ZeroPointLength()),
    ]
    for tab, slot, expected in pairs:
        assert len(rd._vector(tab, slot, "u1")) == expected
    np.testing.assert_array_equal(rd._vector(q._tab, rd._Q_SCALE, "<f4"), q.ScaleAsNumpy())


def test_a_closed_reader_keeps_its_graph_but_refuses_data(demo: dict[str, Path]) -> None:
    reader = open_tflite(demo["mlp"])
    kernel = reader.tensor_array(0, "mlp/dense_1/kernel")  # still viewing the mapping
    reader.close()
    assert len(reader.info().subgraphs) == 1
    it = interpreter(demo["mlp"])
    [stored] = [d["index"] for d in it.get_tensor_details() if d["name"] == "mlp/dense_1/kernel"]
    np.testing.assert_array_equal(kernel, it.get_tensor(stored))  # the view still reads the file
    with pytest.raises(TFLiteError, match="closed"):
        reader.tensor_array(0, "mlp/dense_1/kernel")
    data = demo["mlp"].read_bytes()
    inner = open_tflite(b"\0" * 100 + data + b"\0" * 7, offset=100, size=len(data), name="x")
    assert inner.info().subgraphs == open_tflite(data).info().subgraphs
    with pytest.raises(TFLiteError, match="outside"):
        open_tflite(data, offset=8, size=len(data))


def test_gemma3n_like_shows_every_finding(demo: dict[str, Path]) -> None:
    from engine.tflite import findings

    found = {f.kind for f in findings.find_all(open_tflite(demo["gemma3n_like"]).info())}
    expected = {
        "ffn_widths",
        "altup",
        "laurel",
        "per_layer_embeddings",
        "tied_embedding",
        "attention_pattern",
    }
    assert expected <= found


def test_types_numpy_lacks_and_strings_decode() -> None:
    from engine.tflite.graph import TensorInfo
    from engine.tflite.values import decode

    def tensor(dtype: str, shape: tuple[int, ...], nbytes: int) -> TensorInfo:
        return TensorInfo(0, dtype, shape, None, dtype, 1, nbytes)

    bf16 = np.array([1.5, -2.0, 3.140625], dtype=np.float32).view(np.uint32) >> 16
    raw = bf16.astype("<u2").tobytes()
    assert decode(memoryview(raw), tensor("bfloat16", (3,), 6)).tolist() == [1.5, -2.0, 3.140625]
    e4m3 = bytes([0x38, 0x7E, 0x01, 0xB8])  # 1, 448 (the largest), 2^-9 (smallest), -1
    got = decode(memoryview(e4m3), tensor("float8_e4m3fn", (4,), 4))
    assert got.tolist() == [1.0, 448.0, 2.0**-9, -1.0] and got.dtype == np.float32
    e5m2 = bytes([0x3C, 0xC0])  # the top bytes of float16 1.0 and -2.0
    assert decode(memoryview(e5m2), tensor("float8_e5m2", (2,), 2)).tolist() == [1.0, -2.0]
    int2 = bytes([0b11_10_01_00])  # 0, 1, -2, -1, low bits first
    assert decode(memoryview(int2), tensor("int2", (4,), 1)).tolist() == [0, 1, -2, -1]
    strings = struct_strings([b"ab", b"", b"xyz"])
    got = decode(memoryview(strings), tensor("string", (3,), len(strings)))
    assert got.tolist() == [b"ab", b"", b"xyz"]
    with pytest.raises(TFLiteError, match="offsets"):
        decode(memoryview(strings[:-2]), tensor("string", (3,), len(strings) - 2))


def struct_strings(items: list[bytes]) -> bytes:
    """TFLite's string buffer: count, offsets from the buffer start, then the bytes."""
    head = 4 * (len(items) + 2)
    offsets = np.cumsum([head] + [len(s) for s in items]).astype("<i4")
    return np.int32(len(items)).astype("<i4").tobytes() + offsets.tobytes() + b"".join(items)
