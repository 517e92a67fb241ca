"""Dump constant tensors to .npy files (one per tensor) or one streamed .safetensors file."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from engine.atomic import atomic_path, write_json_atomic
from engine.tflite import values
from engine.tflite.bundles import TFLiteFile, open_file
from engine.tflite.graph import TensorInfo, TFLiteError
from engine.tflite.reader import TFLiteReader

_SAFETENSORS_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}
INDEX_FILE = "tensors.json"


def dump_tensors(
    source: TFLiteReader | TFLiteFile | str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    pattern: str | None = None,
    all: bool = False,  # the CLI's word; shadows the builtin only in here
    section: str | int | None = None,
    subgraph: int | None = None,
    raw: bool = False,
) -> dict[str, Path]:
    """Write the selected constant tensors, dequantized to float32 unless `raw`.

    `out` ending in `.safetensors` gives one file (keys = tensor names); otherwise a folder of
    `.npy` files with safe names plus `tensors.json` (written last) mapping files to tensors.
    Returns {key: path written}. Tensor names repeated across subgraphs get `@subgraph:index`.
    """
    if sum((names is not None, pattern is not None, bool(all))) != 1:
        raise ValueError("choose exactly one of names, pattern or all")
    reader, owned = _reader(source, section)
    try:
        chosen = _select(reader, names, pattern, subgraph)
        keys = _keys(chosen)
        out = Path(out)
        if out.suffix == ".safetensors":
            return _write_safetensors(reader, chosen, keys, out, dequantize=not raw)
        return _write_npy(reader, chosen, keys, out, dequantize=not raw)
    finally:
        if owned:
            reader.close()


def _reader(
    source: TFLiteReader | TFLiteFile | str | os.PathLike[str], section: str | int | None
) -> tuple[TFLiteReader, bool]:
    if isinstance(source, TFLiteReader):
        return source, False
    file = source if isinstance(source, TFLiteFile) else open_file(source)
    return file.open(section), True


def _dumpable(t: TensorInfo) -> bool:
    return t.buffer_bytes > 0 and t.dtype != "string"


def _select(
    reader: TFLiteReader,
    names: Iterable[str] | None,
    pattern: str | None,
    subgraph: int | None,
) -> list[tuple[int, TensorInfo]]:
    subgraphs = reader.info().subgraphs
    if subgraph is not None and not 0 <= subgraph < len(subgraphs):
        raise TFLiteError(f"{reader.name} has no subgraph {subgraph}.")
    pool = [
        (sg.index, t)
        for sg in subgraphs
        if subgraph is None or sg.index == subgraph
        for t in sg.tensors
    ]
    if names is not None:
        chosen = []
        for name in names:
            found = [(si, t) for si, t in pool if t.name == name]
            if not found:
                raise TFLiteError(f"{reader.name} has no tensor named '{name}'.")
            if not all(_dumpable(t) for _, t in found):
                raise TFLiteError(f"tensor '{name}' has no constant numeric data to dump.")
            chosen += found
        return chosen
    if pattern is not None:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise TFLiteError(f"'{pattern}' is not a valid regular expression ({exc}).") from exc
        chosen = [(si, t) for si, t in pool if _dumpable(t) and regex.search(t.name)]
        if not chosen:
            raise TFLiteError(f"no constant tensor of {reader.name} matches '{pattern}'.")
        return chosen
    chosen = [(si, t) for si, t in pool if _dumpable(t)]
    if not chosen:
        raise TFLiteError(f"{reader.name} has no constant tensors.")
    return chosen


def _keys(chosen: list[tuple[int, TensorInfo]]) -> list[str]:
    counts = Counter(t.name for _, t in chosen)
    return [t.name if counts[t.name] == 1 else f"{t.name}@{si}:{t.index}" for si, t in chosen]


def _safe_name(key: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "tensor"
    stem = stem[:150]
    name, n = stem, 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}_{n}"
    taken.add(name.lower())
    return name + ".npy"


def _write_npy(
    reader: TFLiteReader,
    chosen: list[tuple[int, TensorInfo]],
    keys: list[str],
    folder: Path,
    *,
    dequantize: bool,
) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written, index, taken = {}, [], {INDEX_FILE}
    for (si, t), key in zip(chosen, keys, strict=True):
        array = reader.tensor_array(si, t.index, dequantize=dequantize)
        path = folder / _safe_name(key, taken)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        written[key] = path
        index.append(_entry(key, si, t, array.dtype, dequantize) | {"file": path.name})
    write_json_atomic(folder / INDEX_FILE, {"source": reader.name, "tensors": index}, indent=1)
    return written


def _entry(key: str, si: int, t: TensorInfo, dtype: np.dtype, dequantize: bool) -> dict:
    return {
        "key": key,
        "name": t.name,
        "subgraph": si,
        "index": t.index,
        "shape": list(t.shape),
        "stored_dtype": t.dtype,
        "dtype": np.dtype(dtype).name,
        "dequantized": dequantize and t.quantization is not None and bool(t.quantization.scale),
    }


def _write_safetensors(
    reader: TFLiteReader,
    chosen: list[tuple[int, TensorInfo]],
    keys: list[str],
    path: Path,
    *,
    dequantize: bool,
) -> dict[str, Path]:
    # Streamed: the header is known from shapes and dtypes, then each tensor is read, written
    # and dropped, so memory stays at one tensor (https://github.com/huggingface/safetensors).
    header: dict[str, dict] = {
        "__metadata__": {"source": reader.name, "dequantized": str(dequantize).lower()}
    }
    at = 0
    for (_, t), key in zip(chosen, keys, strict=True):
        dtype = values.output_dtype(t, dequantize)
        code = _SAFETENSORS_DTYPES.get(dtype.name)
        if code is None:
            raise TFLiteError(f"tensor '{t.name}' ({dtype.name}) has no safetensors type.")
        size = t.numel * dtype.itemsize
        header[key] = {"dtype": code, "shape": list(t.shape), "data_offsets": [at, at + size]}
        at += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for si, t in chosen:
            array = reader.tensor_array(si, t.index, dequantize=dequantize)
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            f.write(memoryview(array.reshape(-1)).cast("B"))
    return dict.fromkeys(keys, path)
