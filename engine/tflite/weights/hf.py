"""A Hugging Face model folder's weights, read lazily from its safetensors files by mmap.

Torch-free (the `tflite` CLI stays light): the safetensors header is JSON after an 8-byte length,
and each tensor's bytes are viewed in place. bfloat16 has no numpy type, so its bits are read as
uint16 and widened to float32 (exact); float32 stays float32, never through float64.
"""

from __future__ import annotations

import json
import mmap
import struct
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import SubnetScopeError

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 << 20  # a header larger than this is not a model's


@dataclass(frozen=True)
class ParamInfo:
    """One stored parameter: where its bytes are, and what they hold."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # the safetensors dtype ("F32", "BF16", ...)
    file: int  # index into HFWeights.files
    start: int  # first byte in the file
    nbytes: int

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


class HFWeights:
    """The parameters of a folder's `*.safetensors` files; arrays are mmap views, read on demand."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.files = _weight_files(self.folder)
        self.params: dict[str, ParamInfo] = {}
        self._maps: list[mmap.mmap] = []
        for i, path in enumerate(self.files):
            with open(path, "rb") as f:
                self._maps.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            for info in _header(path, self._maps[-1], i):
                self.params[info.name] = info

    def close(self) -> None:
        for m in self._maps:
            with suppress(BufferError):  # arrays still viewing it keep it until they go
                m.close()
        self._maps = []

    def __enter__(self) -> HFWeights:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def array(self, name: str) -> np.ndarray:
        """The parameter's values: float32 for F32 / F16 / BF16, else its own numpy type."""
        p = self.params[name]
        raw = np.frombuffer(self._maps[p.file], dtype=np.uint8, count=p.nbytes, offset=p.start)
        if p.dtype == "BF16":
            bits = raw.view("<u2").astype(np.uint32) << np.uint32(16)
            return bits.view(np.float32).reshape(p.shape)
        if p.dtype not in _DTYPES:
            raise SubnetScopeError(f"parameter {name} has type {p.dtype}, which is not read here")
        values = raw.view(_DTYPES[p.dtype]).reshape(p.shape)
        return values.astype(np.float32) if p.dtype == "F16" else values


def _weight_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SubnetScopeError(f"{folder} is not a folder; give a Hugging Face model folder.")
    files = sorted(folder.glob("*.safetensors"))
    if not (folder / "config.json").is_file() or not files:
        raise SubnetScopeError(
            f"{folder} is not a Hugging Face model folder: it needs config.json and "
            "*.safetensors weights."
        )
    return files


def _header(path: Path, data: mmap.mmap, file: int) -> list[ParamInfo]:
    try:
        (length,) = struct.unpack("<Q", data[:8])
        if length > min(_MAX_HEADER, len(data) - 8):
            raise ValueError("header length past the file's end")
        header = json.loads(bytes(data[8 : 8 + length]))
        base = 8 + length
        out = []
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            shape = tuple(int(d) for d in entry["shape"])
            if not 0 <= begin <= end <= len(data) - base:
                raise ValueError(f"{name} lies outside the file")
            out.append(ParamInfo(name, shape, entry["dtype"], file, base + begin, end - begin))
        return out
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise SubnetScopeError(f"{path.name} is not a readable safetensors file ({exc}).") from exc
