"""Update masks, one bit per weight: bit-packed into safetensors, and their coverage and overlap.

A mask file is a safetensors file of uint8 tensors (`np.packbits`, big bit order, of the
flattened mask) whose metadata holds each tensor's shape and the change criterion. The diff
streams masks into the file as it goes: the header is known up front (shapes fix the sizes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.atomic import atomic_path
from engine.errors import SubnetScopeError
from engine.sparsity.reader import TensorInfo, read_header, read_rows

FORMAT = "subnetscope-mask-v1"


def pack(mask: np.ndarray) -> np.ndarray:
    """The flattened boolean mask as bits: uint8 of ceil(numel / 8) bytes."""
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1))


def unpack(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    numel = math.prod(shape)
    return np.unpackbits(packed, count=numel).astype(bool).reshape(shape)


def popcount(packed: np.ndarray) -> int:
    return int(np.bitwise_count(packed).sum(dtype=np.int64))


class MaskWriter:
    """Writes a mask file tensor by tensor, in the order the shapes were declared."""

    def __init__(self, path: Path, shapes: Mapping[str, tuple[int, ...]], criterion: str) -> None:
        self.path = path
        self._order = list(shapes)
        self._sizes = {name: math.ceil(math.prod(s) / 8) for name, s in shapes.items()}
        header: dict[str, object] = {
            "__metadata__": {
                "format": FORMAT,
                "criterion": criterion,
                "shapes": json.dumps({k: list(v) for k, v in shapes.items()}),
            }
        }
        offset = 0
        for name in self._order:
            size = self._sizes[name]
            header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # safetensors pads the header to 8-byte alignment
        self._file = path.open("wb")
        self._file.write(len(text).to_bytes(8, "little") + text)
        self._index, self._written = 0, 0
        self._skip_empty()

    def _skip_empty(self) -> None:
        while self._index < len(self._order) and self._sizes[self._order[self._index]] == 0:
            self._index += 1

    def write(self, name: str, packed: np.ndarray) -> None:
        """Append bytes of tensor `name`; a tensor may come in several pieces, whole bytes each."""
        if self._index >= len(self._order) or name != self._order[self._index]:
            raise RuntimeError(f"mask '{name}' written out of the declared order")
        self._file.write(np.ascontiguousarray(packed, dtype=np.uint8).tobytes())
        self._written += packed.size
        if self._written > self._sizes[name]:
            raise RuntimeError(f"mask '{name}' got more bytes than its shape holds")
        if self._written == self._sizes[name]:
            self._index, self._written = self._index + 1, 0
            self._skip_empty()

    def close(self) -> None:
        self._file.close()
        if self._index != len(self._order):
            raise RuntimeError(f"mask file {self.path} closed before all masks were written")


@dataclass
class MaskSet:
    """Packed masks by tensor name, in memory or read lazily from a mask file."""

    shapes: dict[str, tuple[int, ...]]
    criterion: str
    packed: dict[str, np.ndarray] = field(default_factory=dict)  # in memory
    path: Path | None = None  # else read from here on demand
    _infos: dict[str, TensorInfo] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_masks(cls, masks: Mapping[str, np.ndarray], criterion: str) -> MaskSet:
        return cls(
            shapes={k: tuple(np.shape(m)) for k, m in masks.items()},
            criterion=criterion,
            packed={k: pack(m) for k, m in masks.items()},
        )

    @classmethod
    def open(cls, path: Path) -> MaskSet:
        _, meta = read_header(path)
        if meta.get("format") != FORMAT:
            raise SubnetScopeError(f"'{path}' is not a SubnetScope mask file")
        shapes = {k: tuple(v) for k, v in json.loads(meta["shapes"]).items()}
        return cls(shapes=shapes, criterion=meta.get("criterion", "?"), path=path)

    def save(self, path: Path) -> None:
        """Write to `path` atomically and durably (engine.atomic: readers never see half a file)."""
        with atomic_path(path) as tmp:
            writer = MaskWriter(tmp, self.shapes, self.criterion)
            for name in self.shapes:
                if self.numel(name):
                    writer.write(name, self.get_packed(name))
            writer.close()

    @property
    def names(self) -> list[str]:
        return list(self.shapes)

    def get_packed(self, name: str) -> np.ndarray:
        if name in self.packed:
            return self.packed[name]
        if self.path is None:
            raise KeyError(name)
        if self._infos is None:
            self._infos, _ = read_header(self.path)
        info = self._infos[name]
        return read_rows(info, 0, info.rows).numpy().reshape(-1).copy()

    def get(self, name: str) -> np.ndarray:
        """The boolean mask of one tensor, in its shape."""
        return unpack(self.get_packed(name), self.shapes[name])

    def count(self, name: str) -> int:
        return popcount(self.get_packed(name))

    def numel(self, name: str) -> int:
        return math.prod(self.shapes[name])


def _common(a: MaskSet, b: MaskSet) -> list[str]:
    names = [n for n in a.names if n in b.shapes]
    if bad := [n for n in names if a.shapes[n] != b.shapes[n]]:
        raise SubnetScopeError(
            f"masks of {len(bad)} tensor(s) differ in shape, e.g. '{bad[0]}' "
            f"{a.shapes[bad[0]]} vs {b.shapes[bad[0]]}"
        )
    return names


def overlap_table(a: MaskSet, b: MaskSet, names: Iterable[str] | None = None) -> pd.DataFrame:
    """Per tensor: |a|, |b|, |a ∧ b|, |a ∨ b|, Jaccard = |a ∧ b| / |a ∨ b| and coverage of b by
    a = |a ∧ b| / |b| (the share of b's changed weights already changed in a)."""
    rows = []
    for name in names if names is not None else _common(a, b):
        pa, pb = a.get_packed(name), b.get_packed(name)
        both = popcount(pa & pb)
        na, nb = popcount(pa), popcount(pb)
        rows.append(
            {
                "tensor": name,
                "numel": a.numel(name),
                "a": na,
                "b": nb,
                "both": both,
                "either": na + nb - both,
            }
        )
    table = pd.DataFrame(rows, columns=["tensor", "numel", "a", "b", "both", "either"])
    return _with_ratios(table)


def _with_ratios(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["jaccard"] = table["both"] / table["either"].where(table["either"] > 0)
    table["coverage"] = table["both"] / table["b"].where(table["b"] > 0)
    return table


def overlap_totals(table: pd.DataFrame) -> dict[str, float]:
    """Jaccard and coverage over all the tensors of an overlap table (NaN when both are empty)."""
    sums = table[["a", "b", "both", "either"]].sum()
    return {
        "a": int(sums["a"]),
        "b": int(sums["b"]),
        "both": int(sums["both"]),
        "jaccard": float(sums["both"] / sums["either"]) if sums["either"] else math.nan,
        "coverage": float(sums["both"] / sums["b"]) if sums["b"] else math.nan,
    }


def jaccard(a: MaskSet, b: MaskSet) -> float:
    """|a ∧ b| / |a ∨ b| over the tensors both sets have."""
    return overlap_totals(overlap_table(a, b))["jaccard"]


def coverage(earlier: MaskSet, final: MaskSet) -> float:
    """The share of the final mask's changed weights that `earlier` already had changed."""
    return overlap_totals(overlap_table(earlier, final))["coverage"]
