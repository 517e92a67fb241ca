"""The mapped diff: both checkpoints memory-mapped, each tensor walked in chunks of zero-copy
views, every statistic of `stats.diff_tensor` computed on the chunk by the compiled
kernel (engine.sparsity.kernel), or by the numpy pipeline kept as its reference (`KERNEL`).

Why mapped: `reader.read_rows` copies every block out of the page cache (`readinto`), and the
torch kernels after it ran the diff at 0.78 GB/s against 9 GB/s memcpy (issue 19). Here a chunk
is `np.frombuffer` on the mapping, and its pages are dropped from the process (`MADV_DONTNEED`:
the page cache keeps them) once it is counted, so neither anonymous nor file-backed RSS grows
with the tensor or the file: memory is each chunk's packed mask and column counts (the numpy
path: one workspace per thread, two float32 and four boolean chunks, ~13 MB at CHUNK_NUMEL) plus
each tensor's row/column counts.

Same statistics, same meaning as `stats.compare_block`: `exact` is "the stored bits differ",
`bf16` is "the bf16 roundings differ", τ is |float32(t) − float32(b)| > float32(τ). A chunk whose
update is sparse computes Δ at its changed elements only (elsewhere Δ is exactly 0). Only
same-dtype pairs of BF16 / F16 / F32 take this path; mixed pairs (an fp32 base against a bf16
run), float64, integers, merged LoRA adapters and in-memory sources take `stats.diff_tensor`.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from engine.sparsity.config import BF16, EXACT, DiffConfig, tolerance_key
from engine.sparsity.masks import MaskWriter
from engine.sparsity.ranks import ZERO_UPDATE, update_ranks
from engine.sparsity.reader import TensorInfo, TensorSpec
from engine.sparsity.reference import ReferenceCounts, reference_dtype
from engine.sparsity.stats import TensorStats, _rank_buffer, nan_max, sum_squares

# Storage dtypes the mapped kernels read: code → the integer view the bits come in.
MAPPED = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32}
_PAGE = mmap.PAGESIZE
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)  # not on Windows: pages then stay mapped
# Elements per chunk: 2 MiB of bf16 per side, 4 MiB float32 buffers (256K elements measured
# slower: numpy's per-call cost; 4M no faster, more memory).
CHUNK_NUMEL = 1 << 20
# Threads computing chunks: two ran 1.3-1.4× one on a loaded 2-core machine (issue 19 benchmark).
WORKERS = min(2, os.cpu_count() or 1)
# Up to this share of changed elements a chunk gathers them and computes Δ on those alone.
SPARSE_SHARE = 0.25
_SEGMENT = 255  # rows summed in uint8 before widening: a count of ≤ 255 ones fits a byte
# Chunks go through the fused compiled kernel (numba; 2.0-2.5× the numpy pipeline, 0.58-0.65×
# the read bandwidth on two threads, benchmarks/sparsity_diff.py); False, or numba missing,
# takes the numpy `_chunk_stats`, the kernel's reference in tests.
KERNEL = True
_NO_DENSE = np.empty((0, 0), np.float32)


class MappedFiles:
    """Read-only mappings of one source's files, opened on first use, closed together.

    `ACCESS_COPY` (a private mapping) makes the views writable, so torch takes them without a
    warning; nothing writes them, so no page ever becomes an anonymous copy.
    """

    def __init__(self) -> None:
        self._maps: dict[Path, mmap.mmap] = {}
        self._lock = threading.Lock()

    def _map(self, file: Path) -> mmap.mmap:
        with self._lock:
            if file not in self._maps:
                with file.open("rb") as f:
                    self._maps[file] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            return self._maps[file]

    def elements(self, info: TensorInfo, first: int, count: int) -> np.ndarray:
        """Elements [first, first + count) of the flattened tensor as their storage bits: a
        view of the mapping, no copy."""
        begin = info.offset + first * info.itemsize
        return np.frombuffer(self._map(info.file), MAPPED[info.dtype], count, begin)

    def release(self, info: TensorInfo, first: int, count: int) -> None:
        """Unmap the whole pages of those elements from this process (the page cache keeps
        them): file-backed RSS then stays at a few chunks, not the file."""
        begin = (info.offset + first * info.itemsize) // _PAGE * _PAGE
        end = (info.offset + (first + count) * info.itemsize) // _PAGE * _PAGE
        if end > begin and _DONTNEED is not None:
            self._map(info.file).madvise(_DONTNEED, begin, end - begin)

    def close(self) -> None:
        for m in self._maps.values():
            # A view still alive (a traceback's frame) pins a map; it closes when collected.
            with contextlib.suppress(BufferError):
                m.close()
        self._maps.clear()


def mapped_info(source: object, name: str) -> TensorInfo | None:
    """Where a source's tensor lies on disk, when the source is plain safetensors files."""
    info = getattr(source, "info", None)
    return info(name) if callable(info) else None


def can_map(base: TensorInfo | None, tuned: TensorInfo | None) -> bool:
    """Whether this pair takes the mapped kernels: both on disk, one dtype the kernels read,
    and aligned to it (safetensors pads its header to 8 bytes; a file that does not is read
    block by block)."""
    return (
        base is not None
        and tuned is not None
        and base.dtype == tuned.dtype
        and base.dtype in MAPPED
        and base.shape == tuned.shape
        and base.offset % base.itemsize == 0
        and tuned.offset % tuned.itemsize == 0
    )


class MappedWorkspace:
    """Buffers for one chunk, reused across chunks and tensors (fresh ones cost page faults)."""

    def __init__(self, numel: int, n_taus: int) -> None:
        self._floats = [np.empty(numel, np.float32) for _ in range(2)]
        self._masks = [np.empty(numel, np.bool_) for _ in range(n_taus + 2)]
        self._halves = [torch.empty(numel, dtype=torch.bfloat16) for _ in range(2)]

    def floats(self, i: int, shape: tuple[int, int]) -> np.ndarray:
        return self._floats[i][: shape[0] * shape[1]].reshape(shape)

    def mask(self, i: int, shape: tuple[int, int]) -> np.ndarray:
        return self._masks[i][: shape[0] * shape[1]].reshape(shape)

    def half(self, i: int, n: int) -> torch.Tensor:
        return self._halves[i][:n]


def _as_torch(bits: np.ndarray, code: str) -> torch.Tensor:
    dtype = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}[code]
    return torch.from_numpy(bits).view(dtype)


def _floats(bits: np.ndarray, code: str, out: np.ndarray) -> np.ndarray:
    """The chunk as float32 (exact: bf16 and fp16 values are float32 values)."""
    if code == "F32":
        return bits.view(np.float32)
    torch.from_numpy(out).copy_(_as_torch(bits, code))  # torch's widening: 2-3× numpy's
    return out


def row_counts(mask: np.ndarray) -> np.ndarray:
    """Set elements per row of a (rows, cols) boolean chunk, as int64.

    With cols a multiple of 8 the bytes are summed as uint64 words in segments of ≤ 255
    words, so each byte lane holds one count (2× packbits + popcount, measured)."""
    n_rows, cols = mask.shape
    if cols % 8 or n_rows == 0:
        return np.bitwise_count(np.packbits(mask, axis=1)).sum(axis=1, dtype=np.int64)
    words = mask.view(np.uint64)  # (rows, cols / 8)
    total = np.zeros(n_rows, np.int64)
    for start in range(0, words.shape[1], _SEGMENT):
        lanes = np.add.reduce(words[:, start : start + _SEGMENT], axis=1)
        total += lanes.view(np.uint8).reshape(n_rows, 8).sum(axis=1, dtype=np.int64)
    return total


def col_counts(mask: np.ndarray) -> np.ndarray:
    """Set elements per column of a (rows, cols) boolean chunk, as int64: uint8 sums over
    ≤ 255 rows at a time (4× a direct int32 sum, measured)."""
    u8 = mask.view(np.uint8)
    out = np.zeros(u8.shape[1], np.int64)
    for start in range(0, u8.shape[0], _SEGMENT):
        out += np.add.reduce(u8[start : start + _SEGMENT], axis=0, dtype=np.uint8)
    return out


def _bf16_differs(
    bits: tuple[np.ndarray, np.ndarray], code: str, ws: MappedWorkspace, out: np.ndarray
) -> np.ndarray:
    """bf16(b) != bf16(t) elementwise, rounded as torch rounds (what compare_block does)."""
    n = bits[0].size
    halves = [
        ws.half(i, n).copy_(_as_torch(x.reshape(-1), code)).view(torch.int16).numpy()
        for i, x in enumerate(bits)
    ]
    np.not_equal(halves[0], halves[1], out=out.reshape(-1))
    return out


@dataclass(frozen=True)
class Chunk:
    """A piece of one tensor: elements [first, first + rows·width), as a (rows, width) block.

    A 2-D tensor's chunks are whole rows (`row` is the first); any other tensor's are flat runs
    of elements (`row` is None). Every chunk but the last holds a multiple of 8 elements, so
    the packed masks of consecutive chunks concatenate into the tensor's."""

    first: int
    rows: int
    width: int
    row: int | None

    @property
    def numel(self) -> int:
        return self.rows * self.width


def chunks(spec: TensorSpec, chunk_numel: int) -> list[Chunk]:
    """The chunks `diff_mapped` walks a tensor in: about `chunk_numel` elements each."""
    if spec.numel == 0:
        return []
    if len(spec.shape) != 2:
        step = max(8, chunk_numel // 8 * 8)
        return [
            Chunk(first, 1, min(step, spec.numel - first), None)
            for first in range(0, spec.numel, step)
        ]
    n_rows, width = spec.shape
    step = max(1, chunk_numel // width)
    if width % 8:
        step = max(8, step // 8 * 8)
    return [
        Chunk(start * width, min(step, n_rows - start), width, start)
        for start in range(0, n_rows, step)
    ]


@dataclass
class ChunkStats:
    """What one chunk adds to its tensor's statistics (row counts only for 2-D tensors)."""

    changed: dict[str, int]
    rows: dict[str, np.ndarray]
    cols: dict[str, np.ndarray]
    delta_sq: float
    base_sq: float
    max_abs: float
    packed: np.ndarray  # the mask criterion's bits


@dataclass
class _Job:
    """What every chunk of one tensor shares."""

    maps: tuple[MappedFiles, MappedFiles]
    infos: tuple[TensorInfo, TensorInfo]
    config: DiffConfig
    taus: list[tuple[str, np.float32]]
    dense: np.ndarray | None
    reference: ReferenceCounts | None
    ref_dtype: torch.dtype | None
    kernel: ModuleType | None = None  # engine.sparsity.kernel, when chunks go through it
    lock: threading.Lock = field(default_factory=threading.Lock)


def _kernel_module() -> ModuleType | None:
    """engine.sparsity.kernel with its JIT warm (numba compiles or loads its cache once per
    process, before the threads start), or None for the numpy path."""
    if not KERNEL:
        return None
    try:
        from engine.sparsity import kernel  # numba: imported by the diff, never by --help
    except ImportError:
        return None
    kernel.warm()
    return kernel


def _diff_chunk(job: _Job, chunk: Chunk, ws: MappedWorkspace) -> ChunkStats:
    """Every criterion, the norms and the counts of one chunk, as `stats.compare_block` and
    `stats.diff_tensor` define them (inf − inf is NaN there too, without a warning)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return _chunk_stats(job, chunk, ws)


def _chunk(job: _Job, chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
    """The chunk's storage bits of both sides, as (rows, width) views of the mappings; the
    reference counts (when asked) get them first."""
    spec, tuned_spec = job.infos
    shape = (chunk.rows, chunk.width)
    b = job.maps[0].elements(spec, chunk.first, chunk.numel).reshape(shape)
    t = job.maps[1].elements(tuned_spec, chunk.first, chunk.numel).reshape(shape)
    if job.reference is not None:
        code = spec.dtype
        with job.lock:  # its counts are shared by the tensor's chunks
            job.reference.add_block(
                _as_torch(b, code), _as_torch(t, code), job.ref_dtype, job.config.tolerances
            )
    return b, t


def _kernel_stats(job: _Job, chunk: Chunk, kernel: ModuleType) -> ChunkStats:
    """One chunk's statistics from the compiled kernel (engine.sparsity.kernel)."""
    b, t = _chunk(job, chunk)
    two_d = chunk.row is not None
    dense = _NO_DENSE if job.dense is None else job.dense[chunk.row : chunk.row + chunk.rows]
    taus = np.array([tau for _, tau in job.taus], np.float32)
    row_of = {EXACT: kernel.EXACT_ROW, BF16: kernel.BF16_ROW}
    row_of |= {key: 2 + i for i, (key, _) in enumerate(job.taus)}
    changed, rows, cols, packed, base_sq, delta_sq, top = kernel.chunk_kernel(
        b,
        t,
        kernel.KINDS[job.infos[0].dtype],
        two_d,
        taus,
        row_of[job.config.mask_criterion],
        dense,
    )
    out = ChunkStats({}, {}, {}, delta_sq, base_sq, kernel.max_abs(top), packed)
    for criterion in job.config.criteria:
        i = row_of[criterion]
        out.changed[criterion] = int(changed[i])
        if two_d:
            out.rows[criterion], out.cols[criterion] = rows[i], cols[i]
    return out


def _count(out: ChunkStats, criterion: str, mask: np.ndarray, chunk: Chunk) -> None:
    """Counts of a dense (rows, width) mask."""
    if chunk.row is None:
        out.changed[criterion] = int(np.count_nonzero(mask))
    else:
        out.rows[criterion] = row_counts(mask)
        out.changed[criterion] = int(out.rows[criterion].sum())
        out.cols[criterion] = col_counts(mask)


def _count_selected(
    out: ChunkStats,
    criterion: str,
    selected: np.ndarray,
    columns: np.ndarray | None,
    bounds: np.ndarray | None,
    width: int,
) -> None:
    """Counts of a mask given as a selection of the chunk's changed positions: `columns` are
    their columns, `bounds` where each row starts among them (2-D chunks only)."""
    out.changed[criterion] = int(np.count_nonzero(selected))
    if columns is not None and bounds is not None:
        # A running count read at the row bounds, and a weighted bincount: no boolean
        # indexing (3× faster on a 5 % update, measured).
        running = np.zeros(selected.size + 1, np.int64)
        np.cumsum(selected, out=running[1:])
        out.rows[criterion] = running[bounds[1:]] - running[bounds[:-1]]
        weights = selected.view(np.uint8)
        out.cols[criterion] = np.bincount(columns, weights, width).astype(np.int64)


def _chunk_stats(job: _Job, chunk: Chunk, ws: MappedWorkspace) -> ChunkStats:
    """The numpy pipeline: one pass per statistic (the kernel's reference)."""
    code = job.infos[0].dtype
    b, t = _chunk(job, chunk)
    shape = b.shape
    exact = np.not_equal(b, t, out=ws.mask(0, shape))
    out = ChunkStats({}, {}, {}, 0.0, 0.0, 0.0, np.empty(0, np.uint8))
    _count(out, EXACT, exact, chunk)
    base = _floats(b, code, ws.floats(0, shape))
    out.base_sq = sum_squares(base)
    # Where the bits are equal and the base is finite, Δ is exactly 0 and no criterion sees
    # it: a sparse update needs the floats of its changed elements only. A finite Σ base²
    # proves every base element finite (inf − inf and NaN − NaN are NaN, not 0).
    sparse = (
        job.dense is None
        and out.changed[EXACT] <= chunk.numel * SPARSE_SHARE
        and math.isfinite(out.base_sq)
    )
    if sparse:
        _sparse_criteria(job, chunk, (b, t), exact, out, ws)
    else:
        _dense_criteria(job, chunk, (b, t), base, exact, out, ws)
    return out


def _dense_criteria(
    job: _Job,
    chunk: Chunk,
    bits: tuple[np.ndarray, np.ndarray],
    base: np.ndarray,
    exact: np.ndarray,
    out: ChunkStats,
    ws: MappedWorkspace,
) -> None:
    """Every element's Δ: the path of dense updates, ranks (which keep ΔW) and non-finite
    bases. Two float buffers reused in place: base, then |Δ| over it; tuned, then Δ."""
    code, shape = job.infos[0].dtype, exact.shape
    masks = {EXACT: exact}
    masks[BF16] = (
        exact  # the stored bits are the bf16 bits
        if code == "BF16"
        else _bf16_differs(bits, code, ws, ws.mask(1, shape))
    )
    tuned = _floats(bits[1], code, ws.floats(1, shape))
    delta = np.subtract(tuned, base, out=ws.floats(1, shape))
    out.delta_sq = sum_squares(delta)
    if job.dense is not None:
        job.dense[chunk.row : chunk.row + chunk.rows] = delta
    magnitude = np.abs(delta, out=ws.floats(0, shape))
    out.max_abs = nan_max(magnitude)
    for i, (key, tau) in enumerate(job.taus):
        masks[key] = np.greater(magnitude, tau, out=ws.mask(2 + i, shape))
    for criterion in job.config.criteria:
        if criterion != EXACT:
            _count(out, criterion, masks[criterion], chunk)
    out.packed = np.packbits(masks[job.config.mask_criterion].reshape(-1))


def _sparse_criteria(
    job: _Job,
    chunk: Chunk,
    bits: tuple[np.ndarray, np.ndarray],
    exact: np.ndarray,
    out: ChunkStats,
    ws: MappedWorkspace,
) -> None:
    """Δ at the changed elements only (every other Δ is 0): the floats, the tolerance and bf16
    criteria and their counts on the gathered elements."""
    code, width = job.infos[0].dtype, chunk.width
    where = np.flatnonzero(exact)
    columns = bounds = None
    if chunk.row is not None:
        columns = where & (width - 1) if width & (width - 1) == 0 else where % width
        # Positions are sorted: row r's changes are where[bounds[r]:bounds[r + 1]].
        bounds = np.searchsorted(where, np.arange(chunk.rows + 1) * width)
    values = [x.reshape(-1)[where] for x in bits]
    base, tuned = (_as_torch(v, code).float().numpy() for v in values)
    delta = tuned - base
    out.delta_sq = sum_squares(delta)
    magnitude = np.abs(delta)
    out.max_abs = nan_max(magnitude) if magnitude.size else 0.0
    selections: dict[str, np.ndarray] = {}
    if code == "BF16":  # the stored bits are the bf16 bits
        out.changed[BF16] = out.changed[EXACT]
        if chunk.row is not None:
            out.rows[BF16], out.cols[BF16] = out.rows[EXACT], out.cols[EXACT]
    else:
        halves = [_as_torch(v, code).to(torch.bfloat16).view(torch.int16).numpy() for v in values]
        selections[BF16] = halves[0] != halves[1]
    for key, tau in job.taus:
        selections[key] = magnitude > tau
    for criterion, selected in selections.items():
        _count_selected(out, criterion, selected, columns, bounds, width)
    if job.config.mask_criterion in selections:
        mask = ws.mask(1, exact.shape).reshape(-1)
        mask.fill(False)
        mask[where[selections[job.config.mask_criterion]]] = True
        out.packed = np.packbits(mask)
    else:  # exact, or bf16 of a bf16 pair: the exact mask itself
        out.packed = np.packbits(exact.reshape(-1))


class _Pool:
    """Chunks computed by `workers` threads (the kernel, numpy and torch release the GIL),
    yielded in order, at most 2·workers ahead; one numpy workspace per thread, when used."""

    def __init__(self, workers: int, chunk_numel: int, numel: int, n_taus: int) -> None:
        self.workers, self.chunk_numel = workers, chunk_numel
        self._local = threading.local()
        self._numel, self._n_taus = numel, n_taus
        self._executor = ThreadPoolExecutor(workers) if workers > 1 else None

    def _workspace(self) -> MappedWorkspace:
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = MappedWorkspace(self._numel, self._n_taus)
        return ws

    def _run(self, job: _Job, chunk: Chunk) -> ChunkStats:
        if job.kernel is not None:
            got = _kernel_stats(job, chunk, job.kernel)
        else:
            got = _diff_chunk(job, chunk, self._workspace())
        # Released by the thread that counted it, not in the ordered loop: unmapping is ~10 % of
        # the diff and runs in parallel here. A page shared with a neighbour chunk still being
        # counted is only faulted in again (a clean private file page; nothing is lost).
        for side in (0, 1):
            job.maps[side].release(job.infos[side], chunk.first, chunk.numel)
        return got

    def map(self, job: _Job, todo: list[Chunk]) -> Iterator[tuple[Chunk, ChunkStats]]:
        if self._executor is None:
            for chunk in todo:
                yield chunk, self._run(job, chunk)
            return
        pending: deque[tuple[Chunk, Future[ChunkStats]]] = deque()
        for chunk in todo:
            pending.append((chunk, self._executor.submit(self._run, job, chunk)))
            if len(pending) > 2 * self.workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()


def diff_mapped(
    maps: tuple[MappedFiles, MappedFiles],
    infos: tuple[TensorInfo, TensorInfo],
    config: DiffConfig,
    pool: _Pool,
    *,
    mask_writer: MaskWriter | None = None,
    on_mask: Callable[[np.ndarray], None] | None = None,
    reference: ReferenceCounts | None = None,
) -> TensorStats:
    """One tensor's TensorStats from both mappings: `stats.diff_tensor`'s numbers, without
    its copies, in the pool's chunks."""
    spec, tuned_spec = infos
    two_d = len(spec.shape) == 2
    criteria = config.criteria
    changed = dict.fromkeys(criteria, 0)
    rows = {c: np.zeros(spec.rows, dtype=np.int32) for c in criteria} if two_d else {}
    cols = {c: np.zeros(spec.row_numel, dtype=np.int64) for c in criteria} if two_d else {}
    dense, ranks = _rank_buffer(spec, tuned_spec, config)
    job = _Job(
        maps,
        infos,
        config,
        [(tolerance_key(t), np.float32(t)) for t in config.tolerances],
        dense,
        reference,
        reference_dtype(config.reference_dtype) if reference is not None else None,
        _kernel_module(),
    )
    delta_sq = base_sq = max_abs = 0.0
    todo = chunks(spec, pool.chunk_numel)
    if not todo and on_mask is not None:
        on_mask(np.empty(0, np.uint8))
    # Sums in chunk order, whatever the threads' order: the float totals do not depend on it.
    for chunk, got in pool.map(job, todo):
        delta_sq += got.delta_sq
        base_sq += got.base_sq
        max_abs = max(max_abs, got.max_abs)
        for criterion in criteria:
            changed[criterion] += got.changed[criterion]
            if two_d:
                rows[criterion][chunk.row : chunk.row + chunk.rows] = got.rows[criterion]
                cols[criterion] += got.cols[criterion]
        if mask_writer is not None and got.packed.size:
            mask_writer.write(spec.name, got.packed)
        if on_mask is not None:
            on_mask(got.packed)
    if dense is not None:
        # ΔW == 0 exactly needs no SVD: every rank is 0.
        ranks = update_ranks(dense, config.rank_rtol) if changed[EXACT] else ZERO_UPDATE
    return TensorStats(
        name=spec.name,
        shape=spec.shape,
        dtype=spec.dtype,
        tuned_dtype=tuned_spec.dtype,
        numel=spec.numel,
        changed=changed,
        delta_sq=delta_sq,
        base_sq=base_sq,
        max_abs=max_abs,
        rows=rows,
        cols={c: v.astype(np.int32) for c, v in cols.items()},
        ranks=ranks,
    )


def pool_for(specs: list[TensorSpec], config: DiffConfig, workers: int | None = None) -> _Pool:
    """The chunk pool for a diff of `specs`: CHUNK_NUMEL-element chunks, WORKERS threads."""
    numel = max((chunks(s, CHUNK_NUMEL)[0].numel for s in specs if s.numel), default=0)
    return _Pool(workers or WORKERS, CHUNK_NUMEL, numel, len(config.tolerances))
