"""Turn a constant tensor's stored bytes into a numpy array: unpacking, widening, dequantizing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.tflite import schema
from engine.tflite.graph import TensorInfo, TFLiteError, shown

_PACKED = {"int4": (4, True), "uint4": (4, False), "int2": (2, True)}
_INTEGERS = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", *_PACKED}
# Types numpy lacks: read as float32, which holds each of their values exactly.
_WIDENED = {"bfloat16", "float8_e4m3fn", "float8_e5m2"}
MAX_DENSIFIED = 1 << 24  # sparse tensors expand to at most this, or 256 × their stored values


def unpack_bits(raw: np.ndarray, bits: int, count: int, *, signed: bool) -> np.ndarray:
    """Sub-byte values, low bits first, as int8 (sign-extended) or uint8.

    Same order as LiteRT's `tensor_utils::UnpackDenseInt4IntoInt8`: element 2i is the low nibble
    of byte i, element 2i+1 the high nibble.
    """
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * np.uint8(bits)
    values = ((raw[:, None] >> shifts) & np.uint8((1 << bits) - 1)).reshape(-1)[:count]
    if not signed:
        return values
    up = np.uint8(8 - bits)
    return ((values << up).view(np.int8)) >> np.int8(8 - bits)


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """The inverse of `unpack_bits` (used to write packed int4 weights)."""
    per_byte = 8 // bits
    flat = np.asarray(values).reshape(-1).astype(np.int16) & ((1 << bits) - 1)
    flat = np.concatenate([flat, np.zeros(-len(flat) % per_byte, dtype=np.int16)])
    shifts = np.arange(per_byte, dtype=np.int16) * bits
    return (flat.reshape(-1, per_byte) << shifts).sum(axis=1).astype(np.uint8).tobytes()


def _e4m3fn_table() -> np.ndarray:
    # float8 e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, S.1111.111 is NaN.
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp = (codes >> 3) & 0xF
    man = codes & 0x7
    value = np.where(exp == 0, man / 8.0 * 2.0**-6, (1 + man / 8.0) * 2.0 ** (exp - 7.0))
    value = np.where((codes & 0x7F) == 0x7F, np.nan, value)
    return (sign * value).astype(np.float32)


_E4M3FN = _e4m3fn_table()


def output_dtype(tensor: TensorInfo, dequantize: bool) -> np.dtype:
    """The dtype `decode` returns for this tensor (known before reading any data)."""
    dtype = tensor.dtype
    if dequantize and dtype in _INTEGERS and tensor.quantization and tensor.quantization.scale:
        return np.dtype(np.float32)
    if dtype in _WIDENED or (dequantize and dtype == "float16"):
        return np.dtype(np.float32)
    if dtype in _PACKED:
        return np.dtype(np.int8 if _PACKED[dtype][1] else np.uint8)
    if dtype in schema.NUMPY_DTYPES:
        return schema.NUMPY_DTYPES[dtype]
    if dtype == "string":
        return np.dtype(object)
    raise TFLiteError(
        f"tensor '{shown(tensor.name)}' has type {dtype}, which has no numeric reading."
    )


@dataclass(frozen=True)
class SparseLayout:
    """A sparse tensor's layout (schema.fbs SparsityParameters), dimension metadata in traversal
    order: (dense_size, None, None) for a DENSE level, (0, segments, indices) for SPARSE_CSR."""

    traversal_order: tuple[int, ...]
    block_map: tuple[int, ...]
    dims: tuple[tuple[int, np.ndarray | None, np.ndarray | None], ...]


def sparse_positions(layout: SparseLayout, shape: tuple[int, ...]) -> np.ndarray:
    """Flat dense index of each stored value, in storage order.

    LiteRT's `FormatConverter::Populate` walks the levels depth first; expanding every level in
    order, breadth first, visits the leaves in the same order, so this does it vectorised.
    """
    rank, order, block_map = len(shape), layout.traversal_order, layout.block_map
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(order) != len(layout.dims) or len(order) != rank + len(block_map):
        raise ValueError("traversal order, block map and dimension metadata disagree")
    block_size = [layout.dims[order[rank + j]][0] for j in range(len(block_map))]
    prev = np.zeros(1, dtype=np.int64)
    coords: list[np.ndarray] = []
    for dense_size, segments, indices in layout.dims:
        if segments is None or indices is None:  # DENSE level
            if len(prev) * max(dense_size, 1) > numel:
                raise ValueError("dense levels exceed the tensor's size")
            coords = [np.repeat(c, dense_size) for c in coords]
            coords.append(np.tile(np.arange(dense_size, dtype=np.int64), len(prev)))
            prev = (prev[:, None] * dense_size + np.arange(dense_size, dtype=np.int64)).ravel()
        else:  # SPARSE_CSR level: children of node p are segments[p] .. segments[p + 1]
            if len(prev) and int(prev.max()) + 1 >= len(segments):
                raise ValueError("a sparse level has too few segments")
            starts = segments[prev].astype(np.int64)
            counts = segments[prev + 1].astype(np.int64) - starts
            if np.any(counts < 0) or counts.sum() > len(indices):
                raise ValueError("sparse segments are out of order or out of range")
            first = np.repeat(starts - np.cumsum(counts) + counts, counts)
            prev = first + np.arange(int(counts.sum()), dtype=np.int64)
            coords = [np.repeat(c, counts) for c in coords]
            coords.append(indices[prev].astype(np.int64))
    orig: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * rank
    for i in range(rank):
        orig[order[i]] = coords[i]
    for i in range(rank, len(order)):
        b = order[i] - rank
        orig[block_map[b]] = orig[block_map[b]] * block_size[b] + coords[i]
    return np.ravel_multi_index(orig, shape) if rank else np.zeros(len(prev), dtype=np.int64)


def decode(
    raw: memoryview,
    tensor: TensorInfo,
    *,
    dequantize: bool = True,
    sparse: SparseLayout | None = None,
) -> np.ndarray:
    """The tensor's values shaped like the tensor; zero-copy where the stored type is numpy's.
    Sparse tensors need their `sparse` layout and come back dense."""
    if tensor.sparsity is not None and sparse is None:
        raise TFLiteError(f"tensor '{shown(tensor.name)}' is stored sparse; its layout is needed.")
    positions, count = None, tensor.numel
    if sparse is not None:
        try:
            positions = sparse_positions(sparse, tensor.shape)
        except (ValueError, IndexError) as exc:
            raise TFLiteError(
                f"tensor '{shown(tensor.name)}' has a damaged sparse layout ({exc})."
            ) from exc
        count = len(positions)
        if tensor.numel > max(MAX_DENSIFIED, 256 * count):
            raise TFLiteError(
                f"tensor '{shown(tensor.name)}' would densify {count} values into {tensor.numel}; "
                "that is too sparse to expand safely."
            )
    data = np.frombuffer(raw, dtype=np.uint8)
    if tensor.dtype == "string":
        return _strings(data, tensor)
    values = _flat(data, tensor, count)
    if positions is not None:
        dense = np.zeros(tensor.numel, dtype=values.dtype)
        dense[positions] = values
        values = dense
    values = values.reshape(tensor.shape)
    if dequantize and tensor.dtype == "float16":
        return values.astype(np.float32)
    if (
        dequantize
        and tensor.dtype in _INTEGERS
        and tensor.quantization
        and tensor.quantization.scale
    ):
        return _dequantize(values, tensor)
    return values


def _flat(data: np.ndarray, tensor: TensorInfo, count: int) -> np.ndarray:
    """`count` stored values as a flat array of the nearest numpy type."""
    dtype = tensor.dtype
    if dtype in _PACKED:
        bits, signed = _PACKED[dtype]
        if bits == 4 and len(data) == count:  # older converters stored int4 one value per byte
            low = data & np.uint8(15)
            values = (low << np.uint8(4)).view(np.int8) >> np.int8(4) if signed else low
        else:
            values = unpack_bits(data, bits, count, signed=signed)
    elif dtype == "bfloat16":
        values = (data.view("<u2").astype(np.uint32) << np.uint32(16)).view(np.float32)
    elif dtype == "float8_e5m2":  # the top byte of a float16
        values = (data.astype(np.uint16) << np.uint16(8)).view(np.float16).astype(np.float32)
    elif dtype == "float8_e4m3fn":
        values = _E4M3FN[data]
    elif dtype in schema.NUMPY_DTYPES:
        itemsize = schema.NUMPY_DTYPES[dtype].itemsize
        if len(data) % itemsize:
            raise TFLiteError(
                f"tensor '{shown(tensor.name)}' has {len(data)} bytes, not whole {dtype}s."
            )
        values = data.view(schema.NUMPY_DTYPES[dtype])
    else:
        raise TFLiteError(
            f"tensor '{shown(tensor.name)}' has type {dtype}, which has no numeric reading."
        )
    if values.size != count:
        raise TFLiteError(
            f"tensor '{shown(tensor.name)}' holds {values.size} values but its shape "
            f"{list(tensor.shape)} needs {count}."
        )
    return values


def _dequantize(values: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    q = tensor.quantization
    assert q is not None
    scale = np.asarray(q.scale, dtype=np.float32)
    zero = np.asarray(q.zero_point or (0,), dtype=np.float32)
    if len(zero) not in (1, len(scale)):
        raise TFLiteError(
            f"tensor '{shown(tensor.name)}' has {len(scale)} scales but {len(zero)} zero points."
        )
    if len(scale) > 1:
        axis = q.quantized_dimension
        if not 0 <= axis < values.ndim or values.shape[axis] != len(scale):
            raise TFLiteError(
                f"tensor '{shown(tensor.name)}' has {len(scale)} per-channel scales that do not "
                f"match dimension {axis} of its shape {list(tensor.shape)}."
            )
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape if len(zero) > 1 else [1])
    out = (values.astype(np.float32) - zero) * scale  # float32 throughout: no float64 operands
    return out.astype(np.float32, copy=False)


def _strings(data: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    # TFLite string buffers: int32 count N, int32 offsets[N + 1] from the buffer start, then bytes.
    if len(data) < 4:
        raise TFLiteError(f"string tensor '{shown(tensor.name)}' is truncated.")
    n = int(data[:4].view("<i4")[0])
    if n < 0 or 4 * (n + 2) > len(data):
        raise TFLiteError(
            f"string tensor '{shown(tensor.name)}' claims {n} strings in {len(data)} bytes."
        )
    offsets = data[4 : 4 * (n + 2)].view("<i4")
    if np.any(np.diff(offsets) < 0) or offsets[0] < 4 * (n + 2) or offsets[-1] > len(data):
        raise TFLiteError(f"string tensor '{shown(tensor.name)}' has offsets outside its buffer.")
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = data[offsets[i] : offsets[i + 1]].tobytes()
    if n != tensor.numel:
        raise TFLiteError(
            f"string tensor '{shown(tensor.name)}' holds {n} strings but its shape needs "
            f"{tensor.numel}."
        )
    return out.reshape(tensor.shape)
