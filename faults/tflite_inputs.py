"""10,000 damaged and crafted TFLite files, .task and .litertlm bundles: each one opens or is
refused with a one-sentence TFLiteError within 1 s and 256 MB (issue 15, item 5).

The crafted files point many flatbuffer offsets at one table or vector (and bundle sections at one
model), the shapes that made a 16.5 KB .litertlm take 84 s and an 800 KB .tflite 438 MB before the
readers counted what they visit.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite

from engine.tflite import TFLiteError, bundles, open_file, open_tflite, synthetic
from engine.tflite import reader as reader_module
from faults.table import Row, scenario

AREA = "tflite"
MEDIAPIPE = Path(__file__).resolve().parents[1] / "cache" / "testdata" / "mediapipe"
MAX_SECONDS = 1.0  # CPU seconds to open a file, read its graph and every constant
MAX_MB = 256  # peak memory for the same
FILES = 10_000  # crafted + filled + mutated
CRAFTED_SIZES = (4096, 16_384, 800_000)
FILLED_SIZES = (65_536, 262_144)


# -- crafted shared-reference files --------------------------------------------------------------


class _Writer:
    """Raw TFLite flatbuffers where one table may be referenced any number of times."""

    def __init__(self) -> None:
        self.b = flatbuffers.Builder(1024)

    def _fn(self, table: str, name: str) -> Callable[..., Any]:
        return getattr(sys.modules[f"tflite.{table}"], f"{table}{name}")

    def string(self, text: str | bytes) -> int:
        return self.b.CreateString(text)

    def scalars(self, table: str, field: str, items: list, kind: str = "Int32") -> int:
        self._fn(table, f"Start{field}Vector")(self.b, len(items))
        prepend = getattr(self.b, f"Prepend{kind}")
        for x in reversed(items):
            prepend(x)
        return self.b.EndVector()

    def bytes_vector(self, data: bytes, align: int = 16) -> int:
        self.b.StartVector(1, len(data), align)
        self.b.head -= len(data)
        self.b.Bytes[self.b.head : self.b.head + len(data)] = data
        return self.b.EndVector()

    def refs(self, table: str, field: str, targets: list[int]) -> int:
        """A vector of offsets: the same target may appear many times."""
        self._fn(table, f"Start{field}Vector")(self.b, len(targets))
        for x in reversed(targets):
            self.b.PrependUOffsetTRelative(x)
        return self.b.EndVector()

    def table(self, table: str, **fields: Any) -> int:
        self._fn(table, "Start")(self.b)
        for name, value in fields.items():
            self._fn(table, f"Add{name}")(self.b, value)
        return self._fn(table, "End")(self.b)

    def tensor(self, name: str = "t", shape: tuple[int, ...] = (2,), **fields: Any) -> int:
        shape_vec = self.scalars("Tensor", "Shape", list(shape))
        return self.table("Tensor", Name=self.string(name), Shape=shape_vec, **fields)

    def model(
        self,
        subgraphs: list[int] | None = None,
        *,
        buffers: list[int] | None = None,
        metadata: list[int] | None = None,
        signatures: list[int] | None = None,
    ) -> bytes:
        if subgraphs is None:
            subgraphs = [self.table("SubGraph", Tensors=self.refs("SubGraph", "Tensors", []))]
        if buffers is None:
            buffers = [self.table("Buffer")]
        code = self.table("OperatorCode")  # ADD
        fields = {
            "Version": 3,
            "OperatorCodes": self.refs("Model", "OperatorCodes", [code]),
            "Subgraphs": self.refs("Model", "Subgraphs", subgraphs),
            "Buffers": self.refs("Model", "Buffers", buffers),
        }
        if metadata is not None:
            fields["Metadata"] = self.refs("Model", "Metadata", metadata)
        if signatures is not None:
            fields["SignatureDefs"] = self.refs("Model", "SignatureDefs", signatures)
        self.b.Finish(self.table("Model", **fields), file_identifier=b"TFL3")
        return bytes(self.b.Output())

    def one_subgraph(self, tensors: list[int], operators: list[int] | None = None) -> int:
        fields = {"Tensors": self.refs("SubGraph", "Tensors", tensors)}
        if operators is not None:
            fields["Operators"] = self.refs("SubGraph", "Operators", operators)
        return self.table("SubGraph", **fields)


def shared_subgraphs(n: int) -> bytes:
    """n subgraph offsets at one subgraph of n tensor offsets at one tensor (n² tensors)."""
    w = _Writer()
    t = w.tensor()
    sg = w.one_subgraph([t] * n)
    return w.model([sg] * n)


def shared_operators(n: int) -> bytes:
    """n operator offsets at one ADD whose inputs vector has n entries (n² indices)."""
    w = _Writer()
    t = w.tensor()
    inputs = w.scalars("Operator", "Inputs", [0] * n)
    outputs = w.scalars("Operator", "Outputs", [0])
    op = w.table("Operator", OpcodeIndex=0, Inputs=inputs, Outputs=outputs)
    return w.model([w.one_subgraph([t], [op] * n)])


def shared_quantization(n: int) -> bytes:
    """n tensor offsets at one tensor of n channels with n per-channel scales (n² floats)."""
    w = _Writer()
    scale = w.scalars("QuantizationParameters", "Scale", [0.5] * n, "Float32")
    q = w.table("QuantizationParameters", Scale=scale)
    t = w.tensor(shape=(n,), Type=9, Quantization=q)  # int8
    return w.model([w.one_subgraph([t] * n)])


def shared_names(n: int) -> bytes:
    """n tensor offsets at one tensor whose name is as long as the rest of the file."""
    w = _Writer()
    t = w.tensor(name="n" * min(4 * n, (1 << 20) - 1))
    return w.model([w.one_subgraph([t] * n)])


def shared_sparsity(n: int) -> bytes:
    """n tensor offsets at one tensor whose sparsity lists n dimension tables (one, shared)."""
    w = _Writer()
    dim = w.table("DimensionMetadata", Format=0, DenseSize=1)
    dims = w.refs("SparsityParameters", "DimMetadata", [dim] * n)
    sp = w.table("SparsityParameters", DimMetadata=dims)
    t = w.tensor(Sparsity=sp)
    return w.model([w.one_subgraph([t] * n)])


def shared_signatures(n: int) -> bytes:
    """n signature offsets at one signature whose n inputs point at one tensor map."""
    w = _Writer()
    tm = w.table("TensorMap", Name=w.string("x"), TensorIndex=0)
    sig = w.table(
        "SignatureDef",
        Inputs=w.refs("SignatureDef", "Inputs", [tm] * n),
        SignatureKey=w.string("serving_default"),
    )
    sg = w.one_subgraph([w.tensor()])
    return w.model([sg], signatures=[sig] * n)


def shared_metadata(n: int) -> bytes:
    """n metadata offsets at one entry whose name is as long as the rest of the file."""
    w = _Writer()
    entry = w.table("Metadata", Name=w.string("m" * min(4 * n, (1 << 20) - 1)), Buffer=0)
    return w.model(metadata=[entry] * n)


def shared_buffers(n: int) -> bytes:
    """n buffer offsets at one buffer of n int8 weights, read by n quantized tensors (n² values
    to dequantize when every tensor's values are read)."""
    w = _Writer()
    data = w.bytes_vector(bytes(range(256)) * (n // 256 + 1))
    buf = w.table("Buffer", Data=data)
    scale = w.scalars("QuantizationParameters", "Scale", [0.5], "Float32")
    q = w.table("QuantizationParameters", Scale=scale)
    size = 256 * (n // 256 + 1)
    tensors = [w.tensor(f"w{i}", (size,), Type=9, Buffer=i + 1, Quantization=q) for i in range(n)]
    return w.model([w.one_subgraph(tensors)], buffers=[w.table("Buffer"), *[buf] * n])


def shared_tensor_values(n: int) -> bytes:
    """n tensor offsets at one quantized tensor over a buffer of n bytes (legal sharing, absurd
    count: n² values to dequantize when every tensor's values are read)."""
    w = _Writer()
    buf = w.table("Buffer", Data=w.bytes_vector(bytes(n)))
    scale = w.scalars("QuantizationParameters", "Scale", [0.5], "Float32")
    q = w.table("QuantizationParameters", Scale=scale)
    t = w.tensor("w", (n,), Type=9, Buffer=1, Quantization=q)
    return w.model([w.one_subgraph([t] * n)], buffers=[w.table("Buffer"), buf])


def nested(n: int) -> bytes:
    """n subgraphs → one subgraph of n tensors → one tensor, and n operators → one operator with
    n inputs: n² tensors and n³ indices."""
    w = _Writer()
    t = w.tensor()
    inputs = w.scalars("Operator", "Inputs", [0] * n)
    op = w.table("Operator", Inputs=inputs, Outputs=w.scalars("Operator", "Outputs", [0]))
    sg = w.one_subgraph([t] * n, [op] * n)
    return w.model([sg] * n)


def _litertlm(path: Path, header: bytes, payload: bytes, at: int) -> Path:
    head = bundles.LITERTLM_MAGIC + struct.pack("<3I4xQ", 1, 0, 0, 32 + len(header))
    with open(path, "wb") as f:
        f.write(head + header)
        f.seek(at)
        f.write(payload)
    return path


def _litertlm_header(objects: list[int], entries: list[int], b: flatbuffers.Builder) -> bytes:
    # The LiteRT-LM wire format, written with the bundles module's own encoders.
    object_vec = bundles._offset_vector(b, objects)
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, object_vec, 0)
    section_metadata = b.EndObject()
    entry_vec = bundles._offset_vector(b, entries)
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, entry_vec, 0)
    system = b.EndObject()
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, system, 0)
    b.PrependUOffsetTRelativeSlot(1, section_metadata, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def _section_object(b: flatbuffers.Builder, items: int, begin: int, end: int, kind: str) -> int:
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(0, items, 0)
    b.PrependUint64Slot(1, begin, 0)
    b.PrependUint64Slot(2, end, 0)
    b.PrependUint8Slot(3, bundles.LITERTLM_SECTION_TYPES[kind], 0)
    return b.EndObject()


def litertlm_shared_items(path: Path, n: int) -> Path:
    """A .litertlm whose n sections are one section whose n metadata items are one pair."""
    b = flatbuffers.Builder(1024)
    kv = bundles._kv_pair(b, "model_type", "tf_lite_prefill_decode")
    items = bundles._offset_vector(b, [kv] * n)
    obj = _section_object(b, items, 1 << 20, 1 << 20, "GenericBinaryData")
    header = _litertlm_header([obj] * n, [kv] * n, b)
    return _litertlm(path, header, b"", 1 << 20)


def litertlm_overlap(path: Path, n: int) -> Path:
    """A .litertlm whose n TFLite sections all lie over the same model (n opens of one model)."""
    model = synthetic.gemma3n_sections()["TF_LITE_PREFILL_DECODE"]
    at = bundles.LITERTLM_BLOCK * (1 + (40 * n) // bundles.LITERTLM_BLOCK)
    b = flatbuffers.Builder(1024)
    objects = [
        _section_object(b, bundles._offset_vector(b, []), at, at + len(model), "TFLiteModel")
        for _ in range(n)
    ]
    return _litertlm(path, _litertlm_header(objects, [], b), model, at)


def task_overlap(path: Path, n: int) -> Path:
    """A .task zip whose central directory lists one STORED model n times under n names."""
    model = synthetic.gemma3n_sections()["TF_LITE_PREFILL_DECODE"]
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr(
            zipfile.ZipInfo("TF_LITE_PREFILL_DECODE", date_time=(2025, 1, 1, 0, 0, 0)), model
        )
    data = raw.getvalue()
    eocd = data.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", data, eocd + 12)
    entry = data[cd_offset : cd_offset + cd_size]
    name_len = struct.unpack_from("<H", entry, 28)[0]
    entries = []
    for i in range(n):
        name = f"TF_LITE_{i:06d}".encode()
        head = bytearray(entry[:46])
        struct.pack_into("<H", head, 28, len(name))
        entries.append(bytes(head) + name + entry[46 + name_len :])
    directory = b"".join(entries)
    end = bytearray(data[eocd:])
    struct.pack_into("<HHII", end, 8, n, n, len(directory), cd_offset)
    path.write_bytes(data[:cd_offset] + directory + bytes(end))
    return path


# (builder, bytes of file per unit of n): n is chosen so that the file has about the size asked.
CRAFTED_MODELS: dict[str, tuple[Callable[[int], bytes], float]] = {
    "shared_subgraphs": (shared_subgraphs, 8),
    "shared_operators": (shared_operators, 8),
    "shared_quantization": (shared_quantization, 8),
    "shared_names": (shared_names, 8),
    "shared_sparsity": (shared_sparsity, 8),
    "shared_signatures": (shared_signatures, 8),
    "shared_metadata": (shared_metadata, 8),
    "shared_buffers": (shared_buffers, 40),
    "shared_tensor_values": (shared_tensor_values, 5),
    "nested": (nested, 16),
}
CRAFTED_BUNDLES: dict[str, tuple[Callable[[Path, int], Path], float, str]] = {
    "litertlm_shared_items": (litertlm_shared_items, 8, ".litertlm"),
    "litertlm_overlap": (litertlm_overlap, 40, ".litertlm"),
    "task_overlap": (task_overlap, 60, ".task"),
}


def crafted_files(folder: Path, sizes: tuple[int, ...] = CRAFTED_SIZES) -> list[Path]:
    """Every crafted shape at about each size (bytes), written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for size in sizes:
        for name, (build, per_n) in CRAFTED_MODELS.items():
            n = max(2, int(size / per_n))
            path = folder / f"{name}-{size}.tflite"
            path.write_bytes(build(n))
            out.append(path)
        for name, (write, per_n, suffix) in CRAFTED_BUNDLES.items():
            out.append(write(folder / f"{name}-{size}{suffix}", max(2, int(size / per_n))))
    return out


# -- files that spend their whole budget legally -------------------------------------------------
def _fill(size: int, per_visit: int, build: Callable[[_Writer, int], int]) -> bytes:
    """A model whose one shared table is visited until about 90 % of the read budget of a
    `size`-byte file is spent, the rest of the file an unused buffer (what a crafter would pad
    with to earn budget): the slowest, largest graph a file of that size may hold."""
    budget = reader_module.READ_FACTOR * size + reader_module.READ_BASE
    n = int(0.9 * budget / per_visit)
    for _ in range(8):  # the charges are estimated: step down until the reader accepts it
        w = _Writer()
        sg = build(w, n)
        pad = max(0, size - 4 * n - 512)
        data = w.model(
            [sg], buffers=[w.table("Buffer"), w.table("Buffer", Data=w.bytes_vector(bytes(pad)))]
        )
        try:
            open_tflite(data).info()
            return data
        except TFLiteError:
            n = int(n * 0.9)
    return data


def filled_operators(size: int) -> bytes:
    """One CONV_2D with its options, listed until the budget is spent (the dearest table to read
    per byte charged)."""
    table = reader_module.TABLE_BYTES

    def build(w: _Writer, n: int) -> int:
        options = w.table(
            "Conv2DOptions",
            Padding=1,
            StrideW=2,
            StrideH=2,
            FusedActivationFunction=1,
            DilationWFactor=1,
            DilationHFactor=1,
        )
        op = w.table(
            "Operator",
            OpcodeIndex=0,
            Inputs=w.scalars("Operator", "Inputs", [0, 0, 0]),
            Outputs=w.scalars("Operator", "Outputs", [0]),
            BuiltinOptionsType=tflite.BuiltinOptions.Conv2DOptions,
            BuiltinOptions=options,
        )
        return w.one_subgraph([w.tensor()], [op] * n)

    return _fill(size, 4 + table + 16 + 8 + table, build)


def filled_tensors(size: int, channels: int = 64) -> bytes:
    """One int8 tensor with per-channel scales, listed until the budget is spent (the most
    Python memory per byte charged)."""
    table = reader_module.TABLE_BYTES

    def build(w: _Writer, n: int) -> int:
        scales = [0.5] * channels
        q = w.table(
            "QuantizationParameters",
            Scale=w.scalars("QuantizationParameters", "Scale", scales, "Float32"),
        )
        return w.one_subgraph([w.tensor(shape=(channels,), Type=9, Quantization=q)] * n)

    return _fill(size, 4 + table + 5 + 8 + table + 4 + 4 * channels, build)


FILLED = {"filled_operators": filled_operators, "filled_tensors": filled_tensors}


# -- mutated real and synthetic files ------------------------------------------------------------
@dataclass
class Source:
    """A file to mutate, and where its structure lies (mutations aimed there most of the time)."""

    name: str
    data: bytes
    suffix: str
    structure: np.ndarray  # byte positions outside tensor data


def _structure(data: bytes, suffix: str) -> np.ndarray:
    mask = np.ones(len(data), dtype=bool)
    if suffix == ".tflite":
        with open_tflite(data) as reader:
            for sg in reader.info().subgraphs:
                for t in sg.tensors:
                    if t.buffer_bytes:
                        start, length = reader.buffer_location(t.buffer)
                        mask[start : start + length] = False
    else:  # a bundle: its header (.litertlm) or its directories (.task)
        mask[4096 : max(4096, len(data) - 2048)] = False
    return np.flatnonzero(mask)


def sources(folder: Path) -> list[Source]:
    """The synthetic demo set (models and bundles, a deflated .task) and the real mediapipe
    models when `scripts/fetch_tflite_samples.sh` has fetched them."""
    paths = synthetic.write_demo_set(folder)
    embedder = {"TF_LITE_EMBEDDER": synthetic.gemma3n_sections()["TF_LITE_EMBEDDER"]}
    paths["task_deflated"] = synthetic.write_task_bundle(
        folder / "deflated.task", embedder, deflate=tuple(embedder)
    )
    real = sorted(MEDIAPIPE.glob("*.tflite")) if MEDIAPIPE.is_dir() else []
    out = []
    for name, path in [*paths.items(), *((p.stem, p) for p in real)]:
        data = path.read_bytes()
        out.append(Source(name, data, path.suffix, _structure(data, path.suffix)))
    return out


MUTATIONS = ("flip", "byte", "u32", "offset", "cut", "zero")


def mutate(source: Source, rng: np.random.Generator) -> bytes:
    """1 to 4 mutations: bit flips, random bytes and u32s, offsets re-aimed forward at another
    structure position (shared references), truncations, zeroed runs."""
    out = bytearray(source.data)
    for _ in range(int(rng.integers(1, 5))):
        if len(out) < 8:
            break
        aimed = rng.random() < 0.7 and len(source.structure)
        pos = int(source.structure[rng.integers(len(source.structure))]) if aimed else 0
        if not aimed or pos >= len(out):
            pos = int(rng.integers(len(out)))
        kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        if kind == "flip":
            out[pos] ^= 1 << int(rng.integers(8))
        elif kind == "byte":
            out[pos] = int(rng.integers(256))
        elif kind == "u32" and pos + 4 <= len(out):
            out[pos : pos + 4] = struct.pack("<I", int(rng.integers(len(out) + 64)))
        elif kind == "offset":
            pos -= pos % 4
            if pos + 8 <= len(out):
                target = int(rng.integers(pos + 4, len(out) - 3))
                out[pos : pos + 4] = struct.pack("<I", target - target % 4 - pos)
        elif kind == "cut":
            del out[pos:]
        elif kind == "zero":
            out[pos : pos + 64] = bytes(min(64, len(out) - pos))
    return bytes(out)


# -- opening and measuring -----------------------------------------------------------------------
class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in a reader hides it."""


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    def ring(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def read_everything(path: Path) -> None:
    """What the explorer does to a file: its sections, every model's graph, every constant's
    values dequantized and raw (as tests/test_tflite_fuzz.py's read_everything)."""
    file = open_file(path)
    for section in file.models:
        with file.open(section.index) as reader:
            info = reader.info()
            for sg in info.subgraphs:
                n = len(sg.tensors)
                if not all(-1 <= i < n for op in sg.ops for i in (*op.inputs, *op.outputs)):
                    raise AssertionError(f"{path.name}: an operator index escaped validation")
                for t in sg.tensors:
                    if t.buffer_bytes:
                        reader.tensor_array(sg.index, t.index)
                        reader.tensor_array(sg.index, t.index, dequantize=False)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so that it measures one file; False when the
    kernel does not allow it here."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class Outcome:
    """One file: opened, refused (with its sentence) or failed; what it cost."""

    group: str  # "mutated", "crafted" or "filled"
    name: str
    size: int  # bytes
    result: str  # "opened", "refused" or "failed: ..."
    message: str
    cpu_s: float
    wall_s: float
    rss_mb: float  # peak resident set above what the process held before the file (-1: unknown)
    traced_mb: float  # peak of Python and NumPy allocations (-1: not traced for this file)

    @property
    def within_limits(self) -> bool:
        return (
            self.result in ("opened", "refused")
            and self.cpu_s <= MAX_SECONDS
            and max(self.rss_mb, self.traced_mb) <= MAX_MB
        )


def _attempt(path: Path) -> tuple[str, str]:
    """(result, message) of reading one file under an alarm at 5 × MAX_SECONDS."""
    try:
        with alarm(5 * MAX_SECONDS):
            read_everything(path)
    except TFLiteError as exc:
        message = str(exc)
        if message and "\n" not in message and len(message) < 400:
            return "refused", message
        return "failed: a refusal that is not one sentence", message[:300]
    except (Exception, Hang) as exc:  # what must never happen: counted and shown, not raised
        message = f"{type(exc).__name__}: {exc}"[:300]
        return f"failed: {message}", message
    return "opened", ""


def measure(group: str, path: Path, *, traced: bool) -> Outcome:
    """Read one file, timing it and taking the peak of its resident memory; when `traced`, read
    it again under tracemalloc for the peak of its Python and NumPy allocations (tracing slows a
    parse 3 to 4 times, so the time is always the untraced reading's)."""
    size = path.stat().st_size
    rss_known = _reset_peak_rss()
    before = _status_kb("VmRSS")
    cpu, wall = time.process_time(), time.perf_counter()
    result, message = _attempt(path)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rss_mb = (_status_kb("VmHWM") - before) / 1024 if rss_known else -1.0
    traced_mb = -1.0
    if traced:
        tracemalloc.start()
        _attempt(path)
        traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return Outcome(group, path.name, size, result, message, cpu, wall, rss_mb, traced_mb)


def run_files(
    folder: Path,
    count: int,
    *,
    seed: int = 0,
    trace_every: int = 50,
    crafted_sizes: tuple[int, ...] = CRAFTED_SIZES,
    filled_sizes: tuple[int, ...] = FILLED_SIZES,
) -> list[Outcome]:
    """Every crafted and filled file, then `count` mutated ones, each opened and measured (the
    mutated ones written, read and deleted one at a time). Crafted and filled files are traced
    with tracemalloc, and one mutated file in `trace_every`."""
    folder.mkdir(parents=True, exist_ok=True)
    crafted = crafted_files(folder / "crafted", crafted_sizes)
    outcomes = [measure("crafted", p, traced=True) for p in crafted]
    for name, build in FILLED.items():
        for size in filled_sizes:
            path = folder / f"{name}-{size}.tflite"
            path.write_bytes(build(size))
            outcomes.append(measure("filled", path, traced=True))
    # The tiny synthetic models parse in a millisecond: they take three turns to the others' one.
    pool = [s for s in sources(folder / "sources") for _ in range(3 if len(s.data) < 4096 else 1)]
    rng = np.random.default_rng(seed)
    for i in range(count):
        source = pool[i % len(pool)]
        path = folder / f"mutated-{i:05d}-{source.name}{source.suffix}"
        path.write_bytes(mutate(source, rng))
        outcomes.append(measure("mutated", path, traced=i % trace_every == 0))
        path.unlink()
    return outcomes


# -- the table -----------------------------------------------------------------------------------
def _mb(o: Outcome) -> str:
    traced = f", {o.traced_mb:.1f} MB traced" if o.traced_mb >= 0 else ""
    return f"{max(o.rss_mb, 0):.1f} MB RSS{traced}"


def _kb(n: int) -> str:
    return f"{n / 1024:,.0f} KB" if n < 1 << 20 else f"{n / 2**20:,.1f} MB"


def _group_row(outcomes: list[Outcome], tried: str) -> Row:
    opened = sum(o.result == "opened" for o in outcomes)
    refused = sum(o.result == "refused" for o in outcomes)
    bad = [o for o in outcomes if not o.within_limits]
    slowest = max(outcomes, key=lambda o: o.cpu_s)
    happened = f"{opened:,} opened, {refused:,} refused with one sentence"
    if bad:
        happened += f"; {len(bad)} out of bounds, e.g. {bad[0].name}: {bad[0].result[:120]}"
        happened += f" ({bad[0].cpu_s:.2f} s, {_mb(bad[0])})"
    traced = [o.traced_mb for o in outcomes if o.traced_mb >= 0]
    figure = (
        f"slowest {slowest.cpu_s:.3f} s CPU ({slowest.name}, {_kb(slowest.size)}, "
        f"{_mb(slowest)}); "
        f"max {max(o.rss_mb for o in outcomes):.1f} MB RSS"
        + (f", {max(traced):.1f} MB traced over {len(traced):,} traced files" if traced else "")
    )
    return Row(AREA, tried, happened, figure, ok=not bad)


def rows(outcomes: list[Outcome], *, seconds: float, max_rss_mb: float) -> list[Row]:
    """Three groups and the run: what was tried, how each group fared, its worst figures."""
    groups = {g: [o for o in outcomes if o.group == g] for g in ("mutated", "crafted", "filled")}
    n_sources = len({o.name.split("-", 2)[2] for o in groups["mutated"]})
    crafted_sizes = [o.size for o in groups["crafted"]]
    out = [
        _group_row(
            groups["mutated"],
            f"{len(groups['mutated']):,} mutated files ({n_sources} sources: the synthetic "
            ".tflite/.task/.litertlm set and the mediapipe models present): bit flips, random "
            "bytes and u32s, offsets re-aimed at other tables, truncations, zeroed runs; each "
            "opened, its graph and every constant read",
        ),
        _group_row(
            groups["crafted"],
            f"{len(crafted_sizes)} crafted shared-reference files of {_kb(min(crafted_sizes))} "
            f"to {_kb(max(crafted_sizes))}: offsets pointing many times at one subgraph, tensor, "
            "operator, quantization, name, sparsity, signature, metadata entry or buffer; "
            ".litertlm items, .litertlm sections and .task members listed many times over one "
            "table or model",
        ),
    ]
    filled = groups["filled"]
    if filled:
        sizes = dict.fromkeys(_kb(o.size) for o in sorted(filled, key=lambda o: o.size))
        row = _group_row(
            filled,
            f"{len(filled)} files that spend 90 % of their read budget legally (one operator or "
            f"quantized tensor listed thousands of times, padded to {' and '.join(sizes)})",
        )
        per_mb = max(o.cpu_s / (o.size / 2**20) for o in filled)
        row.figure += f"; at most {per_mb:.2f} s CPU per MB of file"
        out.append(row)
    out.append(
        Row(
            AREA,
            f"the whole run: {len(outcomes):,} files in one child process on one core",
            f"done in {seconds:.0f} s",
            f"max RSS of the process {max_rss_mb:.0f} MB (Python, NumPy and pandas included)",
            ok=len(outcomes) >= FILES,
        )
    )
    return out


@scenario("tflite")
def tflite_inputs(scratch: Path) -> list[Row]:
    """10,000 files opened in a child process (its own peak RSS, its own memory ceiling)."""
    started = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [sys.executable, "-m", "faults.tflite_inputs", str(scratch), str(FILES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    summary = scratch / "summary.json"
    if child.returncode != 0 or not summary.is_file():
        tail = (child.stderr or child.stdout).strip().splitlines()[-1:] or ["no output"]
        return [Row(AREA, f"{FILES:,} TFLite files", f"the run crashed: {tail[0]}", ok=False)]
    data = json.loads(summary.read_text())
    outcomes = [Outcome(**o) for o in data["outcomes"]]
    return rows(outcomes, seconds=time.monotonic() - started, max_rss_mb=data["max_rss_mb"])


def main(folder: Path, count: int) -> None:
    """The child: a memory ceiling 2 GiB above where it starts, then every file."""
    ceiling = _status_kb("VmSize") * 1024 + (2 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    crafted = len(CRAFTED_SIZES) * (len(CRAFTED_MODELS) + len(CRAFTED_BUNDLES))
    crafted += len(FILLED) * len(FILLED_SIZES)
    outcomes = run_files(folder / "files", count - crafted)
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {"outcomes": [asdict(o) for o in outcomes], "max_rss_mb": max_rss_mb}
    tmp = folder / "summary.json.tmp"
    tmp.write_text(json.dumps(summary))
    os.replace(tmp, folder / "summary.json")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
