"""Open a .tflite model by mmap: its graph costs O(metadata); tensor data is read on request.

The flatbuffer tables are read with the `tflite` package's generated classes; every vector is
read through `np.frombuffer` with its length checked against the mapping, and every flatbuffer
error becomes a one-sentence TFLiteError. Buffers with `offset > 1` lie outside the flatbuffer
(files over 2 GB), at that offset from the model's first byte (LiteRT `interpreter_builder.cc`).

Offsets may point many times at one table or vector: each visit is charged to a `ReadBudget`
proportional to the file's size, so reading a graph costs what its bytes can hold, not what its
references multiply to (issue 15: a 5.4 KB model took 7.3 s, an 800 KB one 438 MB, before).
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import flatbuffers.number_types as N
import numpy as np
import tflite
from flatbuffers.table import Table

from engine.tflite import schema, values
from engine.tflite.graph import (
    ModelInfo,
    OpInfo,
    Quantization,
    SignatureInfo,
    SubgraphInfo,
    TensorInfo,
    TFLiteError,
    shown,
)

IDENTIFIER = b"TFL3"
MAX_RANK = 16
MAX_ELEMENTS = 1 << 48
MAX_OPTION_VALUES = 256  # longer option vectors are summarised by their length
MAX_ITEMS = 1 << 20  # tensors, operators, buffers... per vector: more is damage, not a model
MAX_STRING = 1 << 20
# The read budget: what one reading of a graph may visit, in bytes of tables, vectors and strings,
# per byte of the file (plus a base for tiny files). A table is charged TABLE_BYTES at each visit:
# about what the smallest real one occupies (its offset, vtable offset and a few fields).
READ_FACTOR = 2
READ_BASE = 1 << 16
TABLE_BYTES = 16
# Reading every constant decodes each tensor's buffer: tensors may share one (tied embeddings,
# prefill and decode signatures over the same weights), but all of them together read at most
# this many times the file's bytes.
VALUES_FACTOR = 32

# vtable slots (4 + 2 × field id in schema.fbs) of the vectors read with numpy.
_MODEL_OPCODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA, _MODEL_SIGNATURES = (
    6,
    8,
    12,
    16,
    18,
)
_SG_TENSORS, _SG_INPUTS, _SG_OUTPUTS, _SG_OPERATORS = 4, 6, 8, 10
_OP_INPUTS, _OP_OUTPUTS, _OP_CUSTOM_OPTIONS = 6, 8, 14
_TENSOR_SHAPE, _TENSOR_SHAPE_SIGNATURE = 4, 18
_BUFFER_DATA = 4
_Q_MIN, _Q_MAX, _Q_SCALE, _Q_ZERO_POINT = 4, 6, 8, 10
_SIG_INPUTS, _SIG_OUTPUTS = 4, 6
_SPARSITY_ORDER, _SPARSITY_BLOCK_MAP, _SPARSITY_DIMS = 4, 6, 8
# DimensionMetadata's SparseIndexVector union: Int32Vector, Uint16Vector, Uint8Vector (`values`).
_SPARSE_VECTOR_TYPES = {1: "<i4", 2: "<u2", 3: "u1"}

_MALFORMED = (
    struct.error,
    IndexError,
    ValueError,
    TypeError,
    OverflowError,
    AttributeError,
    UnicodeDecodeError,
    KeyError,
)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 100 else text[:97] + "..."


class ReadBudget:
    """What one reading may still visit, in bytes: `factor` × the bytes it reads from, plus `base`.
    Every visit is charged, so a table referenced a thousand times costs a thousand tables."""

    __slots__ = ("left", "name", "what")

    def __init__(
        self,
        size: int,
        name: str,
        *,
        factor: int | None = None,
        base: int | None = None,
        what: str = "tables and vectors",
    ) -> None:
        factor = READ_FACTOR if factor is None else factor
        self.left = factor * size + (READ_BASE if base is None else base)
        self.name = name
        self.what = what

    def spend(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise TFLiteError(
                f"{shown(self.name)} references more {self.what} than a file of its size can "
                "hold; refused as crafted."
            )


class _Table(Table):
    """A flatbuffer table whose strings are bounded (a damaged length must not copy the file) and
    whose reads are charged to the budget it carries (None: not counted)."""

    __slots__ = ("budget",)

    def __init__(self, buf: Any, pos: int, budget: ReadBudget | None = None) -> None:
        super().__init__(buf, pos)
        self.budget = budget

    def String(self, off: int) -> bytes:
        pos = off + self.Get(N.UOffsetTFlags, off)
        n = self.Get(N.UOffsetTFlags, pos)
        if n > MAX_STRING or pos + 4 + n > len(self.Bytes):
            raise ValueError(f"a string of {n} bytes runs past its limits")
        if self.budget is not None:
            self.budget.spend(4 + n)
        return bytes(self.Bytes[pos + 4 : pos + 4 + n])


def _spend(tab: Table, nbytes: int) -> None:
    budget = getattr(tab, "budget", None)
    if budget is not None:
        budget.spend(nbytes)


def _wrap(obj: Any, budget: ReadBudget | None = None) -> Any:
    """A generated object re-pointed at a bounded table, one table visited (None stays None)."""
    if obj is not None:
        obj._tab = _Table(obj._tab.Bytes, obj._tab.Pos, budget)
        _spend(obj._tab, TABLE_BYTES)
    return obj


def _vector(tab: Table, slot: int, dtype: str, limit: int = MAX_ITEMS) -> np.ndarray | None:
    """A scalar vector field as a read-only numpy view, None when the field is absent."""
    o = tab.Offset(slot)
    if o == 0:
        return None
    n = tab.VectorLen(o)
    if n > limit:
        raise ValueError(f"a vector claims {n} entries (at most {limit} make sense)")
    _spend(tab, 4 + n * np.dtype(dtype).itemsize)
    return np.frombuffer(tab.Bytes, dtype=dtype, count=n, offset=tab.Vector(o))


def _tables(tab: Table, slot: int, cls: type) -> list[Any]:
    """A vector of tables as generated objects (positions checked to lie inside the buffer),
    each charged as one table visited to the budget of `tab`."""
    rel = _vector(tab, slot, "<u4")
    if rel is None or len(rel) == 0:
        return []
    budget = getattr(tab, "budget", None)
    _spend(tab, TABLE_BYTES * len(rel))
    start = tab.Vector(tab.Offset(slot))
    positions = start + 4 * np.arange(len(rel), dtype=np.int64) + rel.astype(np.int64)
    if int(positions.max()) >= len(tab.Bytes):
        raise IndexError("a table offset points past the end of the model")
    out = []
    for pos in positions.tolist():
        obj = cls()
        obj._tab = _Table(tab.Bytes, pos, budget)
        out.append(obj)
    return out


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", errors="replace") if raw else ""


class TFLiteReader:
    """One TFLite model mapped read-only; `info()` is the graph, `tensor_array()` the values."""

    def __init__(
        self,
        view: memoryview,
        *,
        name: str,
        path: Path | None = None,
        offset: int = 0,
        owner: mmap.mmap | None = None,
    ) -> None:
        self._view: memoryview | None = view
        self._owner = owner
        self.name = name
        self.path = path
        self.offset = offset  # where the model's first byte lies in `path` (0 for a plain file)
        self.size = len(view)
        self._info: ModelInfo | None = None
        self._spans: dict[int, tuple[int, int]] = {}

    # -- life cycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release the mapping; arrays already returned keep their pages until they are freed."""
        view, self._view = self._view, None
        if view is not None:
            # Arrays handed out may still view the mapping: it then goes when they do.
            with suppress(BufferError):
                view.release()
        if self._owner is not None:
            with suppress(BufferError):
                self._owner.close()
            self._owner = None

    def __enter__(self) -> TFLiteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TFLiteReader({self.name!r}, offset={self.offset}, size={self.size})"

    @property
    def view(self) -> memoryview:
        if self._view is None:
            raise TFLiteError(f"{shown(self.name)} is closed.")
        return self._view

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except TFLiteError:
            raise
        except _MALFORMED as exc:
            raise TFLiteError(
                f"{shown(self.name)}: the {what} is malformed ({_short(exc)})."
            ) from exc

    def _fail(self, message: str) -> TFLiteError:
        return TFLiteError(f"{shown(self.name)}: {message}")

    # -- graph ----------------------------------------------------------------------------------
    def info(self) -> ModelInfo:
        """Every subgraph, operator, tensor and signature (read once, then cached)."""
        if self._info is None:
            budget = ReadBudget(self.size, self.name)
            self._constants = ReadBudget(
                self.size, self.name, factor=VALUES_FACTOR, what="constant data"
            )
            with self._guard("model header"):
                model = _wrap(tflite.Model.GetRootAsModel(self.view, 0), budget)
                self._info = self._read_model(model)
        return self._info

    def _read_model(self, model: Any) -> ModelInfo:
        tab = model._tab
        with self._guard("buffer list"):
            self._buffers = _tables(tab, _MODEL_BUFFERS, tflite.Buffer)
        with self._guard("operator code list"):
            opcodes = [
                self._read_opcode(oc) for oc in _tables(tab, _MODEL_OPCODES, tflite.OperatorCode)
            ]
        with self._guard("subgraph list"):
            subgraph_tables = _tables(tab, _MODEL_SUBGRAPHS, tflite.SubGraph)
        if not subgraph_tables:
            raise self._fail("the model has no subgraphs.")
        subgraphs = tuple(
            self._read_subgraph(i, sg, opcodes) for i, sg in enumerate(subgraph_tables)
        )
        with self._guard("metadata list"):
            metadata = {}
            for entry in _tables(tab, _MODEL_METADATA, tflite.Metadata):
                metadata[_text(entry.Name())] = self._span(entry.Buffer())[1]
        with self._guard("signature list"):
            signatures = tuple(
                self._read_signature(sig, subgraphs)
                for sig in _tables(tab, _MODEL_SIGNATURES, tflite.SignatureDef)
            )
        with self._guard("model header"):
            version, description = model.Version(), _text(model.Description())
        return ModelInfo(
            name=self.name,
            version=version,
            description=description,
            metadata=metadata,
            signatures=signatures,
            subgraphs=subgraphs,
            file_bytes=self.size,
        )

    def _read_opcode(self, oc: Any) -> tuple[str, bool, int]:
        name = schema.operator_name(oc.DeprecatedBuiltinCode(), oc.BuiltinCode())
        if name == "CUSTOM":
            return _text(oc.CustomCode()) or "CUSTOM", True, oc.Version()
        return name, False, oc.Version()

    def _span(self, index: int) -> tuple[int, int]:
        """(start in the mapping, length) of buffer `index`, bounds-checked; read once."""
        if index in self._spans:
            return self._spans[index]
        if not 0 <= index < len(self._buffers):
            raise self._fail(f"buffer {index} does not exist (the model has {len(self._buffers)}).")
        with self._guard(f"buffer {index}"):
            buf = self._buffers[index]
            offset, size = buf.Offset(), buf.Size()
            if offset > 1:  # stored after the flatbuffer; 0 / 1 are "no external data"
                start, length = offset, size
            else:
                o = buf._tab.Offset(_BUFFER_DATA)
                start, length = (buf._tab.Vector(o), buf._tab.VectorLen(o)) if o else (0, 0)
        if start + length > self.size:
            raise self._fail(
                f"buffer {index} ({length} bytes at offset {start}) lies outside the model's "
                f"{self.size} bytes."
            )
        self._spans[index] = (start, length)
        return start, length

    def _read_subgraph(
        self, index: int, sg: Any, opcodes: list[tuple[str, bool, int]]
    ) -> SubgraphInfo:
        where = f"subgraph {index}"
        with self._guard(where):
            name = _text(sg.Name())
            tensor_tables = _tables(sg._tab, _SG_TENSORS, tflite.Tensor)
            op_tables = _tables(sg._tab, _SG_OPERATORS, tflite.Operator)
            inputs = self._indices(_vector(sg._tab, _SG_INPUTS, "<i4"), len(tensor_tables), where)
            outputs = self._indices(_vector(sg._tab, _SG_OUTPUTS, "<i4"), len(tensor_tables), where)
        tensors = tuple(
            self._read_tensor(i, t, f"{where} tensor {i}") for i, t in enumerate(tensor_tables)
        )
        ops = tuple(
            self._read_op(i, op, opcodes, len(tensors), f"{where} operator {i}")
            for i, op in enumerate(op_tables)
        )
        return SubgraphInfo(index, name, inputs, outputs, tensors, ops)

    def _indices(
        self, vec: np.ndarray | None, n: int, where: str, *, optional: bool = False
    ) -> tuple[int, ...]:
        if vec is None or len(vec) == 0:
            return ()
        low = -1 if optional else 0
        if int(vec.min()) < low or int(vec.max()) >= n:
            raise self._fail(f"{where} refers to a tensor outside its {n} tensors.")
        return tuple(vec.tolist())

    def _read_tensor(self, index: int, t: Any, where: str) -> TensorInfo:
        with self._guard(where):
            name = _text(t.Name())
            label = f"tensor '{shown(name)}' ({where})"
            shape_vec = _vector(t._tab, _TENSOR_SHAPE, "<i4", limit=1 << 16)
            shape = () if shape_vec is None else tuple(shape_vec.tolist())
            if len(shape) > MAX_RANK:
                raise self._fail(f"{label} has rank {len(shape)}, more than {MAX_RANK}.")
            if any(d < 0 for d in shape):
                raise self._fail(f"{label} has a negative dimension in its shape {list(shape)}.")
            sig_vec = _vector(t._tab, _TENSOR_SHAPE_SIGNATURE, "<i4", limit=MAX_RANK)
            signature = None if sig_vec is None else tuple(sig_vec.tolist())
            if signature is not None and any(d < -1 for d in signature):
                raise self._fail(f"{label} has an invalid shape signature {list(signature)}.")
            code = t.Type()
            buffer = t.Buffer()
            is_variable = t.IsVariable()
            channels = max(shape, default=1)
            budget = t._tab.budget
            quantization = self._read_quantization(
                _wrap(t.Quantization(), budget), max(channels, 1)
            )
            sparsity = self._read_sparsity(_wrap(t.Sparsity(), budget))
        dtype = schema.TENSOR_TYPES.get(code, f"type_{code}")
        numel = int(np.prod(shape, dtype=object)) if shape else 1
        if numel > MAX_ELEMENTS:
            raise self._fail(f"{label} has an absurd shape {list(shape)}.")
        nbytes = self._span(buffer)[1] if buffer else 0
        self._constants.spend(nbytes)
        if nbytes and sparsity is None:
            expected = schema.stored_bytes(dtype, numel)
            unpacked_int4 = dtype in ("int4", "uint4") and nbytes == numel
            if expected is not None and nbytes != expected and not unpacked_int4:
                raise self._fail(
                    f"{label} holds {nbytes} bytes but its shape {list(shape)} of {dtype} "
                    f"needs {expected}."
                )
        return TensorInfo(
            index=index,
            name=name,
            shape=shape,
            shape_signature=signature,
            dtype=dtype,
            buffer=buffer,
            buffer_bytes=nbytes,
            is_variable=is_variable,
            quantization=quantization,
            sparsity=sparsity,
        )

    @staticmethod
    def _read_quantization(q: Any, channels: int) -> Quantization | None:
        if q is None:
            return None
        tab = q._tab
        vecs = [
            _vector(tab, slot, dtype, limit=channels)
            for slot, dtype in (
                (_Q_SCALE, "<f4"),
                (_Q_ZERO_POINT, "<i8"),
                (_Q_MIN, "<f4"),
                (_Q_MAX, "<f4"),
            )
        ]
        scale, zero, low, high = (() if v is None else tuple(v.tolist()) for v in vecs)
        if not (scale or zero or low or high):
            return None
        return Quantization(
            scale=scale,
            zero_point=zero,
            quantized_dimension=q.QuantizedDimension(),
            min=low,
            max=high,
        )

    @staticmethod
    def _read_sparsity(sp: Any) -> dict[str, Any] | None:
        if sp is None:
            return None
        order = _vector(sp._tab, _SPARSITY_ORDER, "<i4", limit=2 * MAX_RANK)
        block_map = _vector(sp._tab, _SPARSITY_BLOCK_MAP, "<i4", limit=2 * MAX_RANK)
        dims = []
        for dim in _tables(sp._tab, _SPARSITY_DIMS, tflite.DimensionMetadata):
            if dim.Format() == tflite.DimensionType.DENSE:
                dims.append({"format": "DENSE", "dense_size": dim.DenseSize()})
            else:
                dims.append({"format": "SPARSE_CSR"})
        return {
            "traversal_order": [] if order is None else order.tolist(),
            "block_map": [] if block_map is None else block_map.tolist(),
            "dim_metadata": dims,
        }

    def _read_op(
        self,
        index: int,
        op: Any,
        opcodes: list[tuple[str, bool, int]],
        num_tensors: int,
        where: str,
    ) -> OpInfo:
        with self._guard(where):
            code_index = op.OpcodeIndex()
            if code_index >= len(opcodes):
                raise self._fail(f"{where} uses operator code {code_index} of {len(opcodes)}.")
            opcode, custom, version = opcodes[code_index]
            inputs = self._indices(
                _vector(op._tab, _OP_INPUTS, "<i4"), num_tensors, where, optional=True
            )
            outputs = self._indices(
                _vector(op._tab, _OP_OUTPUTS, "<i4"), num_tensors, where, optional=True
            )
            options = self._read_options(op)
        return OpInfo(index, opcode, custom, version, inputs, outputs, options)

    @staticmethod
    def _read_options(op: Any) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for kind, names, table in (
            (op.BuiltinOptionsType(), schema.BUILTIN_OPTIONS, op.BuiltinOptions),
            (op.BuiltinOptions2Type(), schema.BUILTIN_OPTIONS_2, op.BuiltinOptions2),
        ):
            cls = getattr(tflite, names.get(kind, ""), None) if kind else None
            tab = table() if cls is not None else None
            if tab is None:
                continue
            obj = cls()
            obj._tab = tab
            _wrap(obj, op._tab.budget)
            for accessor, is_vector in schema.option_accessors(cls):
                if is_vector:
                    vec = getattr(obj, f"{accessor}AsNumpy")()
                    if isinstance(vec, np.ndarray):
                        value: Any = (
                            vec.tolist()
                            if len(vec) <= MAX_OPTION_VALUES
                            else f"<{len(vec)} values>"
                        )
                        _spend(obj._tab, min(len(vec), MAX_OPTION_VALUES) * vec.itemsize)
                        options[schema.snake(accessor)] = value
                    continue
                value = schema.decode_option(accessor, getattr(obj, accessor)())
                if value is not None:
                    options[schema.snake(accessor)] = value
        custom = _vector(op._tab, _OP_CUSTOM_OPTIONS, "u1")
        if custom is not None:
            options["custom_options_bytes"] = len(custom)
        return options

    def _read_signature(self, sig: Any, subgraphs: tuple[SubgraphInfo, ...]) -> SignatureInfo:
        key = _text(sig.SignatureKey())
        index = sig.SubgraphIndex()
        if index >= len(subgraphs):
            raise self._fail(
                f"signature '{shown(key)}' names subgraph {index} of {len(subgraphs)}."
            )
        n = len(subgraphs[index].tensors)
        maps = []
        for slot in (_SIG_INPUTS, _SIG_OUTPUTS):
            mapping = {}
            for tm in _tables(sig._tab, slot, tflite.TensorMap):
                tensor = tm.TensorIndex()
                if tensor >= n:
                    raise self._fail(f"signature '{shown(key)}' names tensor {tensor} of {n}.")
                mapping[_text(tm.Name())] = tensor
            maps.append(mapping)
        return SignatureInfo(key=key, subgraph=index, inputs=maps[0], outputs=maps[1])

    # -- values ---------------------------------------------------------------------------------
    def tensor(self, subgraph: int, tensor: int | str) -> TensorInfo:
        """A tensor by index or by name within a subgraph."""
        subgraphs = self.info().subgraphs
        if not 0 <= subgraph < len(subgraphs):
            raise self._fail(f"there is no subgraph {subgraph} (the model has {len(subgraphs)}).")
        tensors = subgraphs[subgraph].tensors
        if isinstance(tensor, str):
            for t in tensors:
                if t.name == tensor:
                    return t
            raise self._fail(f"subgraph {subgraph} has no tensor named '{shown(tensor)}'.")
        if not 0 <= tensor < len(tensors):
            raise self._fail(
                f"subgraph {subgraph} has no tensor {tensor} ({len(tensors)} tensors)."
            )
        return tensors[tensor]

    def buffer_bytes(self, index: int) -> memoryview:
        """The bytes of buffer `index`, zero-copy out of the mapping."""
        self.info()
        start, length = self._span(index)
        return self.view[start : start + length]

    def buffer_location(self, index: int) -> tuple[int, int]:
        """(offset in the file, length) of a buffer: where its bytes lie on disk."""
        self.info()
        start, length = self._span(index)
        return self.offset + start, length

    def tensor_bytes(self, subgraph: int, tensor: int | str) -> memoryview:
        """The constant data of a tensor, zero-copy (empty for activations)."""
        t = self.tensor(subgraph, tensor)
        return self.buffer_bytes(t.buffer) if t.buffer_bytes else self.view[0:0]

    def tensor_array(
        self, subgraph: int, tensor: int | str, *, dequantize: bool = True
    ) -> np.ndarray:
        """A constant tensor's values shaped like it; quantized integers become float32 when
        `dequantize` (per tensor or per channel), float16 too. Read-only when zero-copy."""
        t = self.tensor(subgraph, tensor)
        if not t.buffer_bytes:
            raise self._fail(
                f"tensor '{shown(t.name)}' has no constant data (it is computed at run time)."
            )
        layout = self._sparse_layout(subgraph, t) if t.sparsity is not None else None
        raw = self.tensor_bytes(subgraph, t.index)
        return values.decode(raw, t, dequantize=dequantize, sparse=layout)

    def _sparse_layout(self, subgraph: int, t: TensorInfo) -> values.SparseLayout:
        with self._guard(f"sparsity of tensor '{shown(t.name)}'"):
            model = _wrap(tflite.Model.GetRootAsModel(self.view, 0))
            sg = _tables(model._tab, _MODEL_SUBGRAPHS, tflite.SubGraph)[subgraph]
            sp = _wrap(_tables(sg._tab, _SG_TENSORS, tflite.Tensor)[t.index].Sparsity())
            dims = []
            for dim in _tables(sp._tab, _SPARSITY_DIMS, tflite.DimensionMetadata):
                if dim.Format() == tflite.DimensionType.DENSE:
                    dims.append((dim.DenseSize(), None, None))
                    continue
                arrays = []
                for kind, table in (
                    (dim.ArraySegmentsType(), dim.ArraySegments()),
                    (dim.ArrayIndicesType(), dim.ArrayIndices()),
                ):
                    if kind not in _SPARSE_VECTOR_TYPES or table is None:
                        raise ValueError("a sparse dimension lacks its segments or indices")
                    arrays.append(_vector(table, 4, _SPARSE_VECTOR_TYPES[kind], limit=1 << 31))
                dims.append((0, *arrays))
            order = _vector(sp._tab, _SPARSITY_ORDER, "<i4", limit=2 * MAX_RANK)
            block_map = _vector(sp._tab, _SPARSITY_BLOCK_MAP, "<i4", limit=2 * MAX_RANK)
            return values.SparseLayout(
                traversal_order=() if order is None else tuple(order.tolist()),
                block_map=() if block_map is None else tuple(block_map.tolist()),
                dims=tuple(dims),
            )

    def metadata_bytes(self, name: str) -> memoryview:
        """The buffer behind a model metadata entry (e.g. 'min_runtime_version')."""
        with self._guard("metadata list"):
            model = _wrap(tflite.Model.GetRootAsModel(self.view, 0))
            for entry in _tables(model._tab, _MODEL_METADATA, tflite.Metadata):
                if _text(entry.Name()) == name:
                    return self.buffer_bytes(entry.Buffer())
        raise self._fail(f"there is no metadata entry named '{shown(name)}'.")


def open_tflite(
    path_or_buffer: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    offset: int = 0,
    size: int | None = None,
    name: str | None = None,
) -> TFLiteReader:
    """Map a model (a whole file, or `size` bytes at `offset` inside a bundle) without reading
    its data. Raises TFLiteError for anything that is not a readable TFLite model."""
    if isinstance(path_or_buffer, (str, os.PathLike)):
        path = Path(path_or_buffer)
        view, owner = _map_file(path, offset, size)
        label = name or (path.name if offset == 0 else f"{path.name}@{offset}")
    else:
        try:
            whole = memoryview(path_or_buffer).cast("B")
        except (TypeError, ValueError) as exc:
            raise TFLiteError(f"cannot read a model from {type(path_or_buffer).__name__}.") from exc
        end = len(whole) if size is None else offset + size
        if offset < 0 or end > len(whole) or end < offset:
            raise TFLiteError(f"bytes {offset}..{end} lie outside the {len(whole)}-byte buffer.")
        view, owner, path = whole[offset:end].toreadonly(), None, None
        label = name or "<bytes>"
    _check_header(view, label)
    return TFLiteReader(view, name=label, path=path, offset=offset, owner=owner)


def _map_file(path: Path, offset: int, size: int | None) -> tuple[memoryview, mmap.mmap]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise TFLiteError(f"cannot open {path}: {exc.strerror or exc}.") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TFLiteError(f"{path} is not a regular file.")
        end = st.st_size if size is None else offset + size
        if offset < 0 or end < offset or end > st.st_size:
            raise TFLiteError(
                f"{path.name}: bytes {offset}..{end} lie outside the file's {st.st_size} bytes."
            )
        if end - offset < 8:
            raise TFLiteError(f"{path.name} is too small ({end - offset} bytes) to be a model.")
        # mmap offsets must be multiples of the allocation granularity: map from the page below.
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        mm = mmap.mmap(fd, end - start, offset=start, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise TFLiteError(f"cannot map {path}: {exc.strerror or exc}.") from exc
    finally:
        os.close(fd)
    return memoryview(mm)[offset - start : end - start], mm


def _check_header(view: memoryview, label: str) -> None:
    if len(view) < 8:
        raise TFLiteError(f"{label} is too small ({len(view)} bytes) to be a model.")
    if bytes(view[4:8]) != IDENTIFIER:
        raise TFLiteError(f"{label} is not a TFLite model (no 'TFL3' identifier at byte 4).")
    root = struct.unpack_from("<I", view, 0)[0]
    if not 8 <= root < len(view):
        raise TFLiteError(f"{label} is truncated or damaged (its root table lies outside it).")
