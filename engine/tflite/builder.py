"""Write TFLite flatbuffers from plain specs with the `tflite` package's generated builders.

Only for what the real converter (litert-torch, engine/tflite/converted) cannot produce: the
synthetic set in engine/tflite/synthetic.py (files past 2 GB, int4 / float16 weights, the
Gemma-3n-shaped demo and the bases that the fuzz and budget tests damage), and hand-made specs in
tests: per-channel quantization along a middle axis and a 64 MiB inline buffer (metadata-only reads)
in test_tflite_reader.py, malformed tensors (negative or absurd shapes, short buffers) in
test_tflite_fuzz.py. Graphs a finding or diff is judged on come from the converter, not from here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite

from engine.atomic import atomic_path
from engine.tflite import schema
from engine.tflite.graph import Quantization, TFLiteError
from engine.tflite.values import pack_bits

_ALIGN = 16  # schema.fbs: Buffer.data is force_align 16
_EXTERNAL_ALIGN = 64


def _fn(table: str, name: str) -> Any:
    # `from tflite import Buffer` is the class; the builder functions live in the module.
    return getattr(sys.modules[f"tflite.{table}"], f"{table}{name}")


@dataclass
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    data: np.ndarray | bytes | None = None  # constant values; int4 as int8 values in [-8, 7]
    quantization: Quantization | None = None
    shape_signature: tuple[int, ...] | None = None
    is_variable: bool = False
    share_buffer_with: str | None = None  # reuse the buffer of an earlier constant tensor


@dataclass
class OpSpec:
    opcode: str  # builtin operator name, or the custom code when `custom`
    inputs: tuple[str | None, ...]  # tensor names; None = omitted optional input (-1)
    outputs: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)  # snake_case option fields
    custom: bool = False
    version: int = 1


@dataclass
class SubgraphSpec:
    name: str
    tensors: list[TensorSpec]
    ops: list[OpSpec]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass
class SignatureSpec:
    key: str
    subgraph: int
    inputs: dict[str, str]  # signature name → tensor name
    outputs: dict[str, str]


@dataclass
class ModelSpec:
    subgraphs: list[SubgraphSpec]
    signatures: list[SignatureSpec] = field(default_factory=list)
    description: str = "SubnetScope synthetic model"
    metadata: dict[str, bytes] = field(default_factory=dict)
    version: int = 3


def tensor_data(spec: TensorSpec) -> bytes:
    """The stored bytes of a constant tensor spec (packs int4, little-endian otherwise)."""
    data = spec.data
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    assert data is not None
    if spec.dtype in ("int4", "uint4"):
        return pack_bits(np.asarray(data), 4)
    dtype = schema.NUMPY_DTYPES[spec.dtype]
    return np.ascontiguousarray(np.asarray(data, dtype=dtype)).tobytes()


def build_model(spec: ModelSpec, *, external_from: int | None = None) -> tuple[bytes, list]:
    """(flatbuffer bytes, [(offset, data)] to write after it).

    With `external_from`, constant data is stored outside the flatbuffer from that file offset
    on (Buffer.offset / Buffer.size, the >2 GB layout); 0 means right after the flatbuffer.
    """
    blobs, buffer_of = _collect_buffers(spec)
    if external_from is None:
        return _build(spec, blobs, buffer_of, None), []
    # The flatbuffer's size does not depend on the offsets' values: build once to measure it.
    probe = _build(spec, blobs, buffer_of, [1 << 40] * len(blobs))
    start = max(external_from, len(probe))
    offsets, placed, at = [], [], start
    for blob in blobs:
        at = -(-at // _EXTERNAL_ALIGN) * _EXTERNAL_ALIGN
        offsets.append(at)
        placed.append((at, blob))
        at += len(blob)
    return _build(spec, blobs, buffer_of, offsets), placed


def write_model(path: str | os.PathLike[str], spec: ModelSpec, **kwargs: Any) -> Path:
    """Write a model file (external data by seek + write, so gaps stay sparse on disk)."""
    flat, placed = build_model(spec, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(flat)
        for offset, blob in placed:
            f.seek(offset)
            f.write(blob)
    return path


def _collect_buffers(spec: ModelSpec) -> tuple[list[bytes], dict[tuple[int, str], int]]:
    blobs: list[bytes] = []
    buffer_of: dict[tuple[int, str], int] = {}  # (subgraph, tensor name) → buffer index
    for si, sg in enumerate(spec.subgraphs):
        for t in sg.tensors:
            if t.share_buffer_with is not None:
                buffer_of[si, t.name] = buffer_of[si, t.share_buffer_with]
            elif t.data is not None:
                blobs.append(tensor_data(t))
                buffer_of[si, t.name] = len(blobs)  # buffer 0 is the empty sentinel
    for name, blob in spec.metadata.items():
        blobs.append(blob)
        buffer_of[-1, name] = len(blobs)
    return blobs, buffer_of


def _build(
    spec: ModelSpec,
    blobs: list[bytes],
    buffer_of: dict[tuple[int, str], int],
    external: list[int] | None,
) -> bytes:
    b = flatbuffers.Builder(1024 + sum(map(len, blobs)) if external is None else 1024)

    def ints(table: str, field_name: str, items: list[int]) -> int:
        _fn(table, f"Start{field_name}Vector")(b, len(items))
        for x in reversed(items):
            b.PrependInt32(x)
        return b.EndVector()

    def offsets(table: str, field_name: str, items: list[int]) -> int:
        _fn(table, f"Start{field_name}Vector")(b, len(items))
        for x in reversed(items):
            b.PrependUOffsetTRelative(x)
        return b.EndVector()

    # Buffers (sentinel first).
    buffer_tables = []
    for i, blob in enumerate([b"", *blobs]):
        data = None
        if i and external is None:
            b.StartVector(1, len(blob), _ALIGN)
            b.head -= len(blob)
            b.Bytes[b.head : b.head + len(blob)] = blob
            data = b.EndVector()
        _fn("Buffer", "Start")(b)
        if data is not None:
            _fn("Buffer", "AddData")(b, data)
        if i and external is not None:
            _fn("Buffer", "AddOffset")(b, external[i - 1])
            _fn("Buffer", "AddSize")(b, len(blob))
        buffer_tables.append(_fn("Buffer", "End")(b))

    # Operator codes, deduplicated in order of first use.
    codes: dict[tuple[str, bool, int], int] = {}
    for sg in spec.subgraphs:
        for op in sg.ops:
            codes.setdefault((op.opcode, op.custom, op.version), len(codes))
    code_tables = []
    for opcode, custom, version in codes:
        custom_name = b.CreateString(opcode) if custom else None
        number = schema.CUSTOM if custom else schema.OPERATOR_CODES[opcode]
        _fn("OperatorCode", "Start")(b)
        _fn("OperatorCode", "AddDeprecatedBuiltinCode")(
            b, min(number, schema.PLACEHOLDER_FOR_GREATER_OP_CODES)
        )
        _fn("OperatorCode", "AddBuiltinCode")(b, number)
        _fn("OperatorCode", "AddVersion")(b, version)
        if custom_name is not None:
            _fn("OperatorCode", "AddCustomCode")(b, custom_name)
        code_tables.append(_fn("OperatorCode", "End")(b))

    subgraph_tables = []
    index_of: list[dict[str, int]] = []
    for si, sg in enumerate(spec.subgraphs):
        index = {t.name: i for i, t in enumerate(sg.tensors)}
        if len(index) != len(sg.tensors):
            raise TFLiteError(f"subgraph '{sg.name}' repeats a tensor name.")
        index_of.append(index)
        tensors = [_tensor(b, t, buffer_of.get((si, t.name), 0), ints) for t in sg.tensors]
        ops = [_operator(b, op, index, codes, ints) for op in sg.ops]
        t_vec = offsets("SubGraph", "Tensors", tensors)
        o_vec = offsets("SubGraph", "Operators", ops)
        in_vec = ints("SubGraph", "Inputs", [index[n] for n in sg.inputs])
        out_vec = ints("SubGraph", "Outputs", [index[n] for n in sg.outputs])
        name = b.CreateString(sg.name)
        _fn("SubGraph", "Start")(b)
        _fn("SubGraph", "AddTensors")(b, t_vec)
        _fn("SubGraph", "AddInputs")(b, in_vec)
        _fn("SubGraph", "AddOutputs")(b, out_vec)
        _fn("SubGraph", "AddOperators")(b, o_vec)
        _fn("SubGraph", "AddName")(b, name)
        subgraph_tables.append(_fn("SubGraph", "End")(b))

    signature_tables = []
    for sig in spec.signatures:
        index = index_of[sig.subgraph]
        maps = []
        for mapping in (sig.inputs, sig.outputs):
            entries = []
            for key, tensor in mapping.items():
                key_off = b.CreateString(key)
                _fn("TensorMap", "Start")(b)
                _fn("TensorMap", "AddName")(b, key_off)
                _fn("TensorMap", "AddTensorIndex")(b, index[tensor])
                entries.append(_fn("TensorMap", "End")(b))
            maps.append(entries)
        in_vec = offsets("SignatureDef", "Inputs", maps[0])
        out_vec = offsets("SignatureDef", "Outputs", maps[1])
        key_off = b.CreateString(sig.key)
        _fn("SignatureDef", "Start")(b)
        _fn("SignatureDef", "AddInputs")(b, in_vec)
        _fn("SignatureDef", "AddOutputs")(b, out_vec)
        _fn("SignatureDef", "AddSignatureKey")(b, key_off)
        _fn("SignatureDef", "AddSubgraphIndex")(b, sig.subgraph)
        signature_tables.append(_fn("SignatureDef", "End")(b))

    metadata_tables = []
    for name in spec.metadata:
        name_off = b.CreateString(name)
        _fn("Metadata", "Start")(b)
        _fn("Metadata", "AddName")(b, name_off)
        _fn("Metadata", "AddBuffer")(b, buffer_of[-1, name])
        metadata_tables.append(_fn("Metadata", "End")(b))

    codes_vec = offsets("Model", "OperatorCodes", code_tables)
    sg_vec = offsets("Model", "Subgraphs", subgraph_tables)
    buf_vec = offsets("Model", "Buffers", buffer_tables)
    meta_vec = offsets("Model", "Metadata", metadata_tables)
    sig_vec = offsets("Model", "SignatureDefs", signature_tables)
    description = b.CreateString(spec.description)
    _fn("Model", "Start")(b)
    _fn("Model", "AddVersion")(b, spec.version)
    _fn("Model", "AddOperatorCodes")(b, codes_vec)
    _fn("Model", "AddSubgraphs")(b, sg_vec)
    _fn("Model", "AddDescription")(b, description)
    _fn("Model", "AddBuffers")(b, buf_vec)
    _fn("Model", "AddMetadata")(b, meta_vec)
    _fn("Model", "AddSignatureDefs")(b, sig_vec)
    b.Finish(_fn("Model", "End")(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _tensor(b: flatbuffers.Builder, t: TensorSpec, buffer: int, ints: Any) -> int:
    shape = ints("Tensor", "Shape", list(t.shape))
    signature = (
        ints("Tensor", "ShapeSignature", list(t.shape_signature)) if t.shape_signature else None
    )
    quant = _quantization(b, t.quantization) if t.quantization else None
    name = b.CreateString(t.name)
    _fn("Tensor", "Start")(b)
    _fn("Tensor", "AddShape")(b, shape)
    _fn("Tensor", "AddType")(b, schema.TENSOR_TYPE_CODES[t.dtype])
    _fn("Tensor", "AddBuffer")(b, buffer)
    _fn("Tensor", "AddName")(b, name)
    if quant is not None:
        _fn("Tensor", "AddQuantization")(b, quant)
    if t.is_variable:
        _fn("Tensor", "AddIsVariable")(b, True)
    if signature is not None:
        _fn("Tensor", "AddShapeSignature")(b, signature)
    return _fn("Tensor", "End")(b)


def _quantization(b: flatbuffers.Builder, q: Quantization) -> int:
    def vector(field_name: str, items: tuple, prepend: Any) -> int | None:
        if not items:
            return None
        _fn("QuantizationParameters", f"Start{field_name}Vector")(b, len(items))
        for x in reversed(items):
            prepend(x)
        return b.EndVector()

    vecs = {
        "Scale": vector("Scale", q.scale, b.PrependFloat32),
        "ZeroPoint": vector("ZeroPoint", q.zero_point, b.PrependInt64),
        "Min": vector("Min", q.min, b.PrependFloat32),
        "Max": vector("Max", q.max, b.PrependFloat32),
    }
    _fn("QuantizationParameters", "Start")(b)
    for field_name, vec in vecs.items():
        if vec is not None:
            _fn("QuantizationParameters", f"Add{field_name}")(b, vec)
    _fn("QuantizationParameters", "AddQuantizedDimension")(b, q.quantized_dimension)
    return _fn("QuantizationParameters", "End")(b)


def _operator(
    b: flatbuffers.Builder,
    op: OpSpec,
    index: dict[str, int],
    codes: dict[tuple[str, bool, int], int],
    ints: Any,
) -> int:
    try:
        inputs = [-1 if n is None else index[n] for n in op.inputs]
        outputs = [index[n] for n in op.outputs]
    except KeyError as exc:
        raise TFLiteError(f"operator {op.opcode} names an unknown tensor {exc}.") from None
    options_class = None if op.custom else schema.options_class_for(op.opcode)
    options = _options(b, options_class, op.options) if options_class else None
    if op.options and options_class is None:
        raise TFLiteError(f"operator {op.opcode} takes no builtin options.")
    in_vec = ints("Operator", "Inputs", inputs)
    out_vec = ints("Operator", "Outputs", outputs)
    _fn("Operator", "Start")(b)
    _fn("Operator", "AddOpcodeIndex")(b, codes[op.opcode, op.custom, op.version])
    _fn("Operator", "AddInputs")(b, in_vec)
    _fn("Operator", "AddOutputs")(b, out_vec)
    if options is not None:
        _fn("Operator", "AddBuiltinOptionsType")(b, getattr(tflite.BuiltinOptions, options_class))
        _fn("Operator", "AddBuiltinOptions")(b, options)
    return _fn("Operator", "End")(b)


def _options(b: flatbuffers.Builder, cls_name: str, values: dict[str, Any]) -> int:
    module = sys.modules[f"tflite.{cls_name}"]
    fields = {}
    for key, value in values.items():
        camel = "".join(part.capitalize() for part in key.split("_"))
        adder = getattr(module, f"{cls_name}Add{camel}", None)
        if adder is None:
            raise TFLiteError(f"{cls_name} has no field '{key}'.")
        if isinstance(value, (list, tuple)):
            getattr(module, f"{cls_name}Start{camel}Vector")(b, len(value))
            for x in reversed(value):
                b.PrependInt32(int(x))
            value = b.EndVector()
        elif isinstance(value, str):
            value = schema.OPTION_ENUM_CODES[camel][value]
        fields[adder] = value
    getattr(module, f"{cls_name}Start")(b)
    for adder, value in fields.items():
        adder(b, value)
    return getattr(module, f"{cls_name}End")(b)
