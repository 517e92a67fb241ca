"""Damaged, absurd and random input: every outcome is a ModelInfo or a one-sentence TFLiteError."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.tflite import TFLiteError, open_file, open_tflite, synthetic
from engine.tflite import builder as fb
from engine.tflite.graph import ModelInfo
from faults.tflite_inputs import alarm as time_limit
from tests.tflite_support import MEDIAPIPE

REAL = MEDIAPIPE / "face_detection_short_range.tflite"


def read_everything(data: bytes, *, values: bool) -> ModelInfo | None:
    """Parse a model (and decode every constant); None when it is refused with TFLiteError."""
    with time_limit(5):
        try:
            reader = open_tflite(data)
            info = reader.info()
            if values:
                for sg in info.subgraphs:
                    for t in sg.tensors:
                        if t.buffer_bytes:
                            reader.tensor_array(sg.index, t.index)
                            reader.tensor_array(sg.index, t.index, dequantize=False)
        except TFLiteError as exc:
            message = str(exc)
            assert message and "\n" not in message and len(message) < 400
            return None
    for sg in info.subgraphs:  # what passed validation is consistent
        n = len(sg.tensors)
        assert all(0 <= i < n for i in (*sg.inputs, *sg.outputs))
        assert all(-1 <= i < n for op in sg.ops for i in (*op.inputs, *op.outputs))
    return info


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("tflite_fuzz")
    paths = synthetic.write_demo_set(folder)
    out = {
        k: paths[k].read_bytes() for k in ("mlp", "multi_subgraph", "quantized", "task", "litertlm")
    }
    sections = {"TF_LITE_EMBEDDER": synthetic.gemma3n_sections()["TF_LITE_EMBEDDER"]}
    deflated = synthetic.write_task_bundle(folder / "d.task", sections, deflate=tuple(sections))
    out["task_deflated"] = deflated.read_bytes()
    if REAL.exists():
        out["real"] = REAL.read_bytes()
    return out


# -- crafted damage -----------------------------------------------------------------------------
def test_truncations_bit_flips_and_random_bytes(corpus: dict[str, bytes]) -> None:
    rng = np.random.default_rng(0)
    for key in ("mlp", "quantized"):
        data = corpus[key]
        assert read_everything(data, values=True) is not None
        for n in range(0, len(data), 13):
            assert read_everything(data[:n], values=True) is None  # the root table is at the end
        for _ in range(400):
            damaged = bytearray(data)
            pos = int(rng.integers(len(damaged)))
            damaged[pos] ^= 1 << int(rng.integers(8))
            read_everything(bytes(damaged), values=True)
    for size in (0, 7, 8, 64, 4096):
        noise = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        if size >= 8:
            noise[4:8] = b"TFL3"
        assert read_everything(bytes(noise), values=True) is None


def test_bad_identifier_and_root(corpus: dict[str, bytes]) -> None:
    data = corpus["mlp"]
    with pytest.raises(TFLiteError, match="not a TFLite model"):
        open_tflite(data[:4] + b"TFL2" + data[8:])
    with pytest.raises(TFLiteError, match="root table"):
        open_tflite(struct.pack("<I", len(data) + 10) + data[4:])


def _one_tensor(tmp_path: Path, spec: fb.TensorSpec, **kw) -> Path:
    model = fb.ModelSpec([fb.SubgraphSpec("main", [spec], [], (), ())])
    return fb.write_model(tmp_path / "m.tflite", model, **kw)


@pytest.mark.parametrize(
    ("tensor", "match"),
    [
        (fb.TensorSpec("neg", (4, -2), data=b"\0" * 32), "negative dimension"),
        (fb.TensorSpec("rank", (1,) * 20), "rank 20"),
        (fb.TensorSpec("huge", (1 << 30, 1 << 30, 1 << 20)), "absurd shape"),
        (fb.TensorSpec("short", (4, 4), data=b"\0" * 60), "needs 64"),
        (fb.TensorSpec("int4", (5,), "int4", data=b"\0" * 4), "needs 3"),
        (fb.TensorSpec("sig", (2,), shape_signature=(-3, 2)), "shape signature"),
    ],
)
def test_absurd_tensors(tmp_path: Path, tensor: fb.TensorSpec, match: str) -> None:
    with pytest.raises(TFLiteError, match=match):
        open_tflite(_one_tensor(tmp_path, tensor)).info()


def test_external_buffer_past_the_end(tmp_path: Path) -> None:
    spec = fb.TensorSpec("w", (4,), data=np.ones(4, np.float32))
    path = _one_tensor(tmp_path, spec, external_from=1 << 20)
    data = path.read_bytes()
    assert open_tflite(data).tensor_array(0, "w").tolist() == [1, 1, 1, 1]
    with pytest.raises(TFLiteError, match="lies outside"):
        open_tflite(data[: (1 << 20) + 8]).info()


def _fn(table: str, name: str):
    return getattr(sys.modules[f"tflite.{table}"], f"{table}{name}")


def raw_model(
    *,
    op_inputs: tuple[int, ...] = (0,),
    opcode_index: int = 0,
    tensor_buffer: int = 0,
    signature_subgraph: int = 0,
    signature_tensor: int = 0,
) -> bytes:
    """One ADD over one tensor, with indices that may point nowhere (what the builder forbids)."""
    b = flatbuffers.Builder(256)

    def ints(table: str, field: str, items: tuple[int, ...]) -> int:
        _fn(table, f"Start{field}Vector")(b, len(items))
        for x in reversed(items):
            b.PrependInt32(x)
        return b.EndVector()

    def tables(table: str, field: str, items: list[int]) -> int:
        _fn(table, f"Start{field}Vector")(b, len(items))
        for x in reversed(items):
            b.PrependUOffsetTRelative(x)
        return b.EndVector()

    _fn("Buffer", "Start")(b)
    buffer = _fn("Buffer", "End")(b)
    _fn("OperatorCode", "Start")(b)
    code = _fn("OperatorCode", "End")(b)  # ADD
    shape = ints("Tensor", "Shape", (2,))
    name = b.CreateString("t")
    _fn("Tensor", "Start")(b)
    _fn("Tensor", "AddShape")(b, shape)
    _fn("Tensor", "AddName")(b, name)
    _fn("Tensor", "AddBuffer")(b, tensor_buffer)
    tensor = _fn("Tensor", "End")(b)
    ins, outs = ints("Operator", "Inputs", op_inputs), ints("Operator", "Outputs", (0,))
    _fn("Operator", "Start")(b)
    _fn("Operator", "AddOpcodeIndex")(b, opcode_index)
    _fn("Operator", "AddInputs")(b, ins)
    _fn("Operator", "AddOutputs")(b, outs)
    op = _fn("Operator", "End")(b)
    t_vec, o_vec = tables("SubGraph", "Tensors", [tensor]), tables("SubGraph", "Operators", [op])
    _fn("SubGraph", "Start")(b)
    _fn("SubGraph", "AddTensors")(b, t_vec)
    _fn("SubGraph", "AddOperators")(b, o_vec)
    subgraph = _fn("SubGraph", "End")(b)
    key = b.CreateString("k")
    _fn("TensorMap", "Start")(b)
    _fn("TensorMap", "AddName")(b, key)
    _fn("TensorMap", "AddTensorIndex")(b, signature_tensor)
    tmap = _fn("TensorMap", "End")(b)
    sig_inputs = tables("SignatureDef", "Inputs", [tmap])
    _fn("SignatureDef", "Start")(b)
    _fn("SignatureDef", "AddInputs")(b, sig_inputs)
    _fn("SignatureDef", "AddSubgraphIndex")(b, signature_subgraph)
    sig = _fn("SignatureDef", "End")(b)
    vecs = [
        tables("Model", "OperatorCodes", [code]),
        tables("Model", "Subgraphs", [subgraph]),
        tables("Model", "Buffers", [buffer]),
        tables("Model", "SignatureDefs", [sig]),
    ]
    _fn("Model", "Start")(b)
    _fn("Model", "AddVersion")(b, 3)
    for field, vec in zip(
        ("OperatorCodes", "Subgraphs", "Buffers", "SignatureDefs"), vecs, strict=True
    ):
        _fn("Model", f"Add{field}")(b, vec)
    b.Finish(_fn("Model", "End")(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, None),
        ({"op_inputs": (0, -1)}, None),
        ({"op_inputs": (3,)}, "outside its 1 tensors"),
        ({"op_inputs": (-2,)}, "outside its 1 tensors"),
        ({"opcode_index": 5}, "operator code 5"),
        ({"tensor_buffer": 9}, "buffer 9 does not exist"),
        ({"signature_subgraph": 2}, "names subgraph 2"),
        ({"signature_tensor": 4}, "names tensor 4"),
    ],
)
def test_indices_that_point_nowhere(kwargs: dict, match: str | None) -> None:
    data = raw_model(**kwargs)
    if match is None:
        assert open_tflite(data).info().subgraphs[0].ops[0].opcode == "ADD"
    else:
        with pytest.raises(TFLiteError, match=match):
            open_tflite(data).info()


# -- hypothesis -----------------------------------------------------------------------------------
MUTATION = st.tuples(
    st.sampled_from(("flip", "byte", "u32", "cut", "zero")),
    st.floats(0, 1, exclude_max=True),  # where, as a fraction of the length
    st.integers(0, 2**32 - 1),
)


def mutate(data: bytes, mutations: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in mutations:
        if not out:
            break
        pos = int(where * len(out))
        if kind == "flip":
            out[pos] ^= 1 << (value % 8)
        elif kind == "byte":
            out[pos] = value % 256
        elif kind == "u32" and pos + 4 <= len(out):
            out[pos : pos + 4] = struct.pack("<I", value % (len(out) + 64))
        elif kind == "cut":
            del out[pos:]
        elif kind == "zero":
            out[pos : pos + 64] = bytes(min(64, len(out) - pos))
    return bytes(out)


FUZZ = settings(
    derandomize=True,
    max_examples=120,
    deadline=None,  # the alarm in read_everything is the guard
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(FUZZ, max_examples=400)
@given(
    source=st.sampled_from(("mlp", "multi_subgraph", "quantized", "real")),
    mutations=st.lists(MUTATION, min_size=1, max_size=6),
)
def test_fuzz_models(corpus: dict[str, bytes], source: str, mutations: list) -> None:
    data = corpus.get(source, corpus["mlp"])
    read_everything(mutate(data, mutations), values=source != "real")


@FUZZ
@given(
    source=st.sampled_from(("task", "litertlm", "task_deflated")),
    mutations=st.lists(MUTATION, min_size=1, max_size=4),
    head=st.booleans(),
)
def test_fuzz_bundles(
    corpus: dict[str, bytes],
    tmp_path_factory: pytest.TempPathFactory,
    source: str,
    mutations: list,
    head: bool,
) -> None:
    data = corpus[source]
    if head:  # aim at the headers and directories, where the structure is
        region = max(len(data) - 2048, 0) if source.startswith("task") else 0
        where = [min((region + w * 2048) / len(data), 1 - 1e-9) for _, w, _ in mutations]
        mutations = [(k, w, v) for (k, _, v), w in zip(mutations, where, strict=True)]
    path = tmp_path_factory.getbasetemp() / f"fuzz.{source}"
    path.write_bytes(mutate(data, mutations))
    with time_limit(5):
        try:
            file = open_file(path)
            for s in file.models:
                with file.open(s.index) as reader:
                    reader.info()
        except TFLiteError as exc:
            assert "\n" not in str(exc)
