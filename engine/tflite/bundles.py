"""Recognise .tflite, .task (zip) and .litertlm files; open their TFLite sections in place.

A .task bundle is a zip whose STORED members are mapped at their data offset (parsed from the
member's local file header); a .litertlm container is LiteRT-LM's format: magic `LITERTLM`,
u32 major/minor/patch, 4 bytes of padding, u64 header end, then a `LiteRTLMMetaData`
flatbuffer listing sections (begin, end, data type) aligned to 16 KiB
(google-ai-edge/LiteRT-LM schema/core/litertlm_header_schema.fbs). Nothing is extracted.

Sections never overlap in a real bundle: a file whose sections share bytes is refused, so that
opening every model of a bundle costs what its bytes hold (issue 15); the LiteRT-LM header is
read under the same `ReadBudget` as a model.
"""

from __future__ import annotations

import itertools
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
from flatbuffers.table import Table

from engine.atomic import atomic_path
from engine.tflite.graph import TFLiteError, shown
from engine.tflite.reader import IDENTIFIER, TABLE_BYTES, ReadBudget, TFLiteReader, open_tflite

LITERTLM_MAGIC = b"LITERTLM"
LITERTLM_VERSION = (1, 0, 0)  # the writer's; the reader accepts any 1.x, like LiteRT-LM's
LITERTLM_BLOCK = 16 * 1024
_LITERTLM_HEADER_BEGIN = 32
_MAX_HEADER = 16 << 20
_MAX_SECTIONS = 1 << 16
# AnySectionDataType, in schema order.
LITERTLM_SECTION_TYPES = {
    name: i
    for i, name in enumerate(
        (
            "NONE",
            "GenericBinaryData",
            "Deprecated",
            "TFLiteModel",
            "SP_Tokenizer",
            "LlmMetadataProto",
            "HF_Tokenizer_Zlib",
            "TFLiteWeights",
            "ExecutorMetadataProto",
        )
    )
}
_SECTION_KINDS = {
    "TFLiteModel": "tflite",
    "SP_Tokenizer": "tokenizer",
    "HF_Tokenizer_Zlib": "tokenizer",
    "LlmMetadataProto": "metadata",
    "ExecutorMetadataProto": "metadata",
    "TFLiteWeights": "weights",
}
# VData union members: (struct format of the `value` field, or "s" for a string).
_VDATA = dict(enumerate(("B", "b", "H", "h", "I", "i", "f", "?", "s", "Q", "q", "d"), start=1))
# Deflated .task members up to this size are decompressed into memory; larger ones are refused,
# and so are members that inflate more than MAX_INFLATE_RATIO times (a model's bytes compress a
# few times, a crafted repetition a thousand).
MAX_DEFLATED_BYTES = 64 << 20
MAX_INFLATE_RATIO = 64
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# What zipfile raises on damaged archives and members.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    OverflowError,
    struct.error,
    NotImplementedError,
    RuntimeError,
)


@dataclass(frozen=True)
class Section:
    """One part of a file: a TFLite model, a tokenizer, metadata..."""

    index: int
    name: str  # zip member name, LiteRT-LM model type ("TF_LITE_PREFILL_DECODE"), or file name
    kind: str  # "tflite", "tokenizer", "metadata", "weights" or "data"
    offset: int  # first byte of the stored data in the file
    size: int  # stored bytes
    compressed: bool
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class TFLiteFile:
    """A .tflite, .task or .litertlm file: its sections, and readers over its TFLite ones."""

    def __init__(
        self, path: Path, format: str, sections: tuple[Section, ...], metadata: dict[str, Any]
    ) -> None:
        self.path = path
        self.format = format  # "tflite", "task" or "litertlm"
        self.sections = sections
        self.metadata = metadata  # LiteRT-LM system metadata (empty otherwise)

    def __repr__(self) -> str:
        return f"TFLiteFile({str(self.path)!r}, {self.format}, {len(self.sections)} sections)"

    @property
    def models(self) -> tuple[Section, ...]:
        return tuple(s for s in self.sections if s.kind == "tflite")

    def section(self, key: str | int | None = None) -> Section:
        """A section by name or index; None = the file's only TFLite model."""
        if key is None:
            models = self.models
            if len(models) == 1:
                return models[0]
            raise TFLiteError(
                f"{self.path.name} holds {len(models)} models ({_listed(models)}); "
                "choose a section."
            )
        for s in self.sections:
            if s.name == key or str(s.index) == str(key):
                return s
        raise TFLiteError(
            f"{self.path.name} has no section '{shown(str(key))}' "
            f"(it has: {_listed(self.sections)})."
        )

    def open(self, section: str | int | None = None) -> TFLiteReader:
        """A reader over a TFLite section, mapped at its offset in the file (never extracted)."""
        s = self.section(section)
        name = self.path.name if self.format == "tflite" else f"{self.path.name}:{s.name}"
        if s.kind != "tflite":
            raise TFLiteError(f"section '{shown(s.name)}' is {s.kind}, not a TFLite model.")
        if not s.compressed:
            return open_tflite(self.path, offset=s.offset, size=s.size, name=name)
        return open_tflite(self._inflate(s), name=name)

    def read_section(self, section: str | int, *, limit: int | None = None) -> bytes:
        """The bytes of a (small) section: a tokenizer, metadata; zip members decompressed."""
        s = self.section(section)
        limit = MAX_DEFLATED_BYTES if limit is None else limit
        if s.compressed and self.format == "task":
            return self._inflate(s, limit)
        if s.size > limit:
            raise TFLiteError(f"section '{shown(s.name)}' has {s.size} bytes, more than {limit}.")
        with open(self.path, "rb") as f:
            f.seek(s.offset)
            return f.read(s.size)

    def _inflate(self, s: Section, limit: int | None = None) -> bytes:
        limit = MAX_DEFLATED_BYTES if limit is None else limit
        limit = min(limit, max(MAX_INFLATE_RATIO * s.size, 1 << 20))
        size = s.details.get("uncompressed_size", 0)
        if size > limit:
            raise TFLiteError(
                f"member '{shown(s.name)}' of {self.path.name} is compressed ({size} bytes "
                "inflated); only STORED members can be mapped in place — rebuild the bundle with "
                "`zip -0`."
            )
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(s.name) as member:
                data = member.read(limit + 1)
        except _ZIP_ERRORS as exc:
            raise TFLiteError(
                f"member '{shown(s.name)}' of {self.path.name} is unreadable "
                f"({shown(str(exc), 100)})."
            ) from exc
        if len(data) > limit:
            raise TFLiteError(
                f"member '{shown(s.name)}' of {self.path.name} inflates past {limit} bytes."
            )
        return data


def open_file(path: str | os.PathLike[str]) -> TFLiteFile:
    """Recognise a file by its first bytes and list its sections (reads headers only)."""
    path = Path(path)
    if path.is_dir():
        raise TFLiteError(f"{path} is a folder, not a model file.")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise TFLiteError(f"cannot open {path}: {exc.strerror or exc}.") from exc
    if head[4:8] == IDENTIFIER:
        section = Section(0, path.name, "tflite", 0, size, False)
        return TFLiteFile(path, "tflite", (section,), {})
    if head[:8] == LITERTLM_MAGIC:
        return _open_litertlm(path, head, size)
    if head[:4] in _ZIP_MAGIC:
        return _open_task(path, size)
    raise TFLiteError(
        f"{path.name} is neither a TFLite model, a .task bundle (zip) nor a .litertlm container."
    )


def _listed(sections: tuple[Section, ...]) -> str:
    names = ", ".join(shown(s.name) for s in sections[:8])
    return names + (f" and {len(sections) - 8} more" if len(sections) > 8 else "")


# -- .task (zip) --------------------------------------------------------------------------------
def _member_kind(name: str, head: bytes) -> str:
    upper = name.upper()
    if head[4:8] == IDENTIFIER:
        return "tflite"
    if "TOKENIZER" in upper or upper.endswith((".MODEL", ".SPM")):
        return "tokenizer"
    if "METADATA" in upper or upper.endswith((".JSON", ".PB", ".PBTXT", ".TXT")):
        return "metadata"
    return "data"


def _open_task(path: Path, size: int) -> TFLiteFile:
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
            sections = []
            for info in zf.infolist():
                if info.is_dir():
                    continue
                sections.append(_zip_section(zf, raw, info, len(sections), size, path))
    except _ZIP_ERRORS as exc:
        raise TFLiteError(
            f"{path.name} is a damaged or unsupported zip archive ({shown(str(exc), 100)})."
        ) from exc
    if not any(s.kind == "tflite" for s in sections):
        raise TFLiteError(f"{path.name} is a zip archive with no TFLite model in it, not a bundle.")
    _check_disjoint(sections, path)
    return TFLiteFile(path, "task", tuple(sections), {})


def _check_disjoint(sections: list[Section], path: Path) -> None:
    """Refuse sections that share bytes: one model listed n times would be read n times."""
    spans = sorted((s.offset, s.offset + s.size, s.name) for s in sections if s.size)
    for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
        if begin < end:
            raise TFLiteError(
                f"{path.name}: sections '{shown(first)}' and '{shown(second)}' overlap; "
                "refused as crafted."
            )


def _zip_section(
    zf: zipfile.ZipFile, raw: Any, info: zipfile.ZipInfo, index: int, size: int, path: Path
) -> Section:
    # The data starts after the local header, whose name / extra lengths may differ from the
    # central directory's: read them from the local header itself (APPNOTE 4.3.7).
    raw.seek(info.header_offset)
    local = raw.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise TFLiteError(f"{path.name}: member '{shown(info.filename)}' has no local header.")
    name_len, extra_len = struct.unpack_from("<HH", local, 26)
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.compress_size > size:
        raise TFLiteError(
            f"{path.name}: member '{shown(info.filename)}' runs past the end of the file."
        )
    compressed = info.compress_type != zipfile.ZIP_STORED or bool(info.flag_bits & 1)
    if compressed:
        try:
            with zf.open(info) as member:
                head = member.read(8)
        except _ZIP_ERRORS:
            head = b""
    else:
        raw.seek(start)
        head = raw.read(8)
    details = {
        "compress_type": {0: "stored", 8: "deflated"}.get(info.compress_type, info.compress_type),
        "uncompressed_size": info.file_size,
    }
    kind = _member_kind(info.filename, head)
    return Section(index, info.filename, kind, start, info.compress_size, compressed, details)


# -- .litertlm ----------------------------------------------------------------------------------
def _open_litertlm(path: Path, head: bytes, size: int) -> TFLiteFile:
    if len(head) < _LITERTLM_HEADER_BEGIN:
        raise TFLiteError(f"{path.name} is a truncated LiteRT-LM container.")
    major, minor, patch = struct.unpack_from("<3I", head, 8)
    (header_end,) = struct.unpack_from("<Q", head, 24)
    if major != LITERTLM_VERSION[0]:
        raise TFLiteError(
            f"{path.name} is LiteRT-LM version {major}.{minor}; this reader knows 1.x."
        )
    if not _LITERTLM_HEADER_BEGIN + 8 <= header_end <= min(size, _MAX_HEADER):
        raise TFLiteError(f"{path.name}: the LiteRT-LM header end ({header_end}) is out of range.")
    with open(path, "rb") as f:
        f.seek(_LITERTLM_HEADER_BEGIN)
        header = f.read(header_end - _LITERTLM_HEADER_BEGIN)
    try:
        metadata, objects = _parse_litertlm_header(header, ReadBudget(len(header), path.name))
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise TFLiteError(
            f"{path.name}: the LiteRT-LM header is malformed ({shown(str(exc), 100)})."
        ) from exc
    sections, seen = [], set()
    for i, (begin, end, type_code, items) in enumerate(objects):
        if not header_end <= begin <= end <= size:
            raise TFLiteError(
                f"{path.name}: section {i} ({begin}..{end}) lies outside the file's {size} bytes."
            )
        type_name = next(
            (k for k, v in LITERTLM_SECTION_TYPES.items() if v == type_code), f"type_{type_code}"
        )
        kind = _SECTION_KINDS.get(type_name, "data")
        model_type = items.get("model_type")
        name = str(model_type).upper() if kind == "tflite" and model_type else type_name
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        details = {"data_type": type_name, **items}
        compressed = type_name == "HF_Tokenizer_Zlib"
        sections.append(Section(i, name, kind, begin, end - begin, compressed, details))
    _check_disjoint(sections, path)
    metadata["version"] = f"{major}.{minor}.{patch}"
    return TFLiteFile(path, "litertlm", tuple(sections), metadata)


# The header's readers charge each table, vector and string they visit to the header's budget.
def _table(tab: Table, slot: int, budget: ReadBudget) -> Table | None:
    o = tab.Offset(slot)
    if not o:
        return None
    budget.spend(TABLE_BYTES)
    return Table(tab.Bytes, tab.Indirect(o + tab.Pos))


def _tables(tab: Table | None, slot: int, budget: ReadBudget) -> list[Table]:
    if tab is None or not (o := tab.Offset(slot)):
        return []
    start, n = tab.Vector(o), tab.VectorLen(o)
    if start + 4 * n > len(tab.Bytes) or n > _MAX_SECTIONS:
        raise IndexError(f"a vector of {n} entries does not fit the header")
    budget.spend((4 + TABLE_BYTES) * n)
    return [Table(tab.Bytes, tab.Indirect(start + 4 * i)) for i in range(n)]


def _scalar(tab: Table, slot: int, fmt: str) -> Any:
    o = tab.Offset(slot)
    return struct.unpack_from("<" + fmt, tab.Bytes, tab.Pos + o)[0] if o else 0


def _string(tab: Table, slot: int, budget: ReadBudget) -> str:
    o = tab.Offset(slot)
    if not o:
        return ""
    pos = tab.Indirect(o + tab.Pos)
    (n,) = struct.unpack_from("<I", tab.Bytes, pos)
    if pos + 4 + n > len(tab.Bytes):
        raise IndexError("a string runs past the end of the header")
    budget.spend(4 + n)
    return bytes(tab.Bytes[pos + 4 : pos + 4 + n]).decode("utf-8", errors="replace")


def _key_values(tabs: list[Table], budget: ReadBudget) -> dict[str, Any]:
    out = {}
    for kv in tabs:
        fmt = _VDATA.get(_scalar(kv, 6, "B"))
        value_tab = _table(kv, 8, budget)
        if fmt is None or value_tab is None:
            continue
        value = _string(value_tab, 4, budget) if fmt == "s" else _scalar(value_tab, 4, fmt)
        out[_string(kv, 4, budget)] = value
    return out


def _parse_litertlm_header(buf: bytes, budget: ReadBudget) -> tuple[dict[str, Any], list[tuple]]:
    (root_pos,) = struct.unpack_from("<I", buf, 0)
    if root_pos >= len(buf):
        raise IndexError("the root table lies outside the header")
    root = Table(buf, root_pos)
    system = _table(root, 4, budget)
    metadata = _key_values(_tables(system, 4, budget), budget)
    objects = []
    for obj in _tables(_table(root, 6, budget), 4, budget):
        items = _key_values(_tables(obj, 4, budget), budget)
        objects.append((_scalar(obj, 6, "Q"), _scalar(obj, 8, "Q"), _scalar(obj, 10, "B"), items))
    return metadata, objects


def _kv_pair(b: flatbuffers.Builder, key: str, value: Any) -> int:
    key_off = b.CreateString(key)
    if isinstance(value, str):
        text = b.CreateString(value)
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, text, 0)
        kind = 9
    elif isinstance(value, bool):
        b.StartObject(1)
        b.PrependBoolSlot(0, value, False)
        kind = 8
    elif isinstance(value, int):
        b.StartObject(1)
        b.PrependInt64Slot(0, value, 0)
        kind = 11
    else:
        b.StartObject(1)
        b.PrependFloat64Slot(0, float(value), 0.0)
        kind = 12
    value_off = b.EndObject()
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(0, key_off, 0)
    b.PrependUint8Slot(1, kind, 0)
    b.PrependUOffsetTRelativeSlot(2, value_off, 0)
    return b.EndObject()


def _offset_vector(b: flatbuffers.Builder, items: list[int]) -> int:
    b.StartVector(4, len(items), 4)
    for x in reversed(items):
        b.PrependUOffsetTRelative(x)
    return b.EndVector()


def _litertlm_header(
    sections: list[tuple[str, bytes, dict[str, Any]]],
    offsets: list[tuple[int, int]],
    system: dict[str, Any],
) -> bytes:
    b = flatbuffers.Builder(1024)
    objects = []
    for (kind, _, items), (begin, end) in zip(sections, offsets, strict=True):
        item_vec = _offset_vector(b, [_kv_pair(b, k, v) for k, v in items.items()])
        b.StartObject(4)
        b.PrependUOffsetTRelativeSlot(0, item_vec, 0)
        b.PrependUint64Slot(1, begin, 0)
        b.PrependUint64Slot(2, end, 0)
        b.PrependUint8Slot(3, LITERTLM_SECTION_TYPES[kind], 0)
        objects.append(b.EndObject())
    object_vec = _offset_vector(b, objects)
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, object_vec, 0)
    section_metadata = b.EndObject()
    entry_vec = _offset_vector(b, [_kv_pair(b, k, v) for k, v in system.items()])
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, entry_vec, 0)
    system_metadata = b.EndObject()
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, system_metadata, 0)
    b.PrependUOffsetTRelativeSlot(1, section_metadata, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def write_litertlm_container(
    path: str | os.PathLike[str],
    sections: list[tuple[str, bytes, dict[str, Any]]],
    system_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a LiteRT-LM container as LiteRT-LM's builder lays it out: header, then each
    section at the next 16 KiB boundary (gaps left as sparse holes)."""
    system = dict(system_metadata or {})

    def block(n: int) -> int:
        return -(-n // LITERTLM_BLOCK) * LITERTLM_BLOCK

    # The header's size does not depend on the offsets' values: measure it with placeholders.
    size = len(_litertlm_header(sections, [(1, 1)] * len(sections), system))
    offsets, at = [], block(_LITERTLM_HEADER_BEGIN + size)
    for _, data, _ in sections:
        offsets.append((at, at + len(data)))
        at = block(at + len(data))
    header = _litertlm_header(sections, offsets, system)
    assert len(header) == size
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(LITERTLM_MAGIC + struct.pack("<3I4xQ", *LITERTLM_VERSION, 32 + len(header)))
        f.write(header)
        for (_, data, _), (begin, _) in zip(sections, offsets, strict=True):
            f.seek(begin)
            f.write(data)
        f.truncate(offsets[-1][1] if offsets else f.tell())
    return path
