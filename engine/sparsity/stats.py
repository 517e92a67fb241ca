"""One tensor's update statistics, streamed in row blocks: change counts, norms, row/column counts.

Criteria, per element: |Δ| > τ for each tolerance (Δ computed in float32, float64 when either side
is float64); `exact`: the stored bits differ (values, when the two dtypes differ); `bf16`: the
bf16 roundings differ — the change survives storage in bf16 (PULSE / "The Path Not Taken": much
of the reported RL sparsity is updates too small for bf16). bf16 ⊆ exact always holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.sparsity.config import BF16, EXACT, DiffConfig, tolerance_key
from engine.sparsity.masks import MaskWriter
from engine.sparsity.ranks import ZERO_UPDATE, RankStats, rank_bytes, skipped, update_ranks
from engine.sparsity.reader import TensorSpec
from engine.sparsity.reference import ReferenceCounts, reference_dtype
from engine.sparsity.sources import WeightSource

_SUM_ROW = 4096
_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass
class TensorStats:
    """What the diff learned about one tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # the base's stored dtype (safetensors code)
    tuned_dtype: str
    numel: int
    changed: dict[str, int]  # criterion label → changed elements
    delta_sq: float  # ‖ΔW‖_F²
    base_sq: float  # ‖W_base‖_F²
    max_abs: float
    # 2-D tensors only: changed elements per row / per column, by criterion.
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    cols: dict[str, np.ndarray] = field(default_factory=dict)
    ranks: RankStats | None = None


def block_rows(spec: TensorSpec, block_mb: int) -> int:
    """Rows per read: about `block_mb` of float32, a multiple of 8 so packed mask bytes align."""
    if spec.rows <= 8 or spec.row_numel == 0:
        return max(spec.rows, 1)
    rows = (block_mb << 20) // (4 * spec.row_numel)
    return max(8, rows // 8 * 8)


def sum_squares(x: np.ndarray) -> float:
    """Σ x², summed in float32 over rows of 4096 and in float64 across them.

    torch's float32 `vector_norm` drifts by ~1e-4 relative over a 2M-element block (measured
    against float64); this stays within ~1e-9 at the speed of a dot product."""
    flat = x.reshape(-1)
    cut = flat.size - flat.size % _SUM_ROW
    head = flat[:cut].reshape(-1, _SUM_ROW)
    total = float(np.vecdot(head, head).sum(dtype=np.float64)) if cut else 0.0
    tail = flat[cut:].astype(np.float64)
    return total + float(np.dot(tail, tail))


def nan_max(x: np.ndarray) -> float:
    """The largest element that is a number (NaN if none is): NaN updates are left out of
    max |Δ| whatever block they fall in, so the maximum does not depend on the block size."""
    return float(np.fmax.reduce(x.reshape(-1)))


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(_INT_OF_SIZE[t.element_size()])


def _differ(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """a != b elementwise into `out` (numpy's is 2× torch.ne on integer views here)."""
    np.not_equal(a.numpy(), b.numpy(), out=out.numpy())
    return out


class Workspace:
    """Output buffers for one block, reused across blocks and tensors.

    Fresh 32 MB temporaries cost more in page faults than the arithmetic on them (measured: a
    float32 subtraction 23 ms with a new output, 8 ms into a reused one), so the hot path of
    `compare_block` writes into these.
    """

    def __init__(self, numel: int, n_masks: int) -> None:
        # torch.empty touches no page until written, so unused buffers cost no memory.
        self._floats = [torch.empty(numel, dtype=torch.float32) for _ in range(4)]
        self._masks = [torch.empty(numel, dtype=torch.bool) for _ in range(n_masks)]
        self._bf16 = [torch.empty(numel, dtype=torch.bfloat16) for _ in range(2)]

    def floats(self, i: int, shape: torch.Size) -> torch.Tensor:
        return self._floats[i][: shape.numel()].view(shape)

    def mask(self, i: int, shape: torch.Size) -> torch.Tensor:
        return self._masks[i][: shape.numel()].view(shape)

    def bf16(self, i: int, shape: torch.Size) -> torch.Tensor:
        return self._bf16[i][: shape.numel()].view(shape)


@dataclass
class Block:
    """One block's comparison: masks by criterion label, Δ, |Δ| and the base (as computed)."""

    masks: dict[str, torch.Tensor]
    delta: torch.Tensor
    base: torch.Tensor
    magnitude: torch.Tensor


def compare_block(
    b: torch.Tensor,
    t: torch.Tensor,
    tolerances: tuple[float, ...],
    workspace: Workspace | None = None,
) -> Block:
    """Change masks by criterion, the signed update Δ, |Δ| and the base, for one block of rows.

    `b` and `t` are left untouched (they may be a caller's tensors or a reused read buffer);
    the outputs live in `workspace` when given, valid until its next use.
    """
    shape = b.shape
    ws = workspace or Workspace(b.numel(), len(tolerances) + 2)
    floating = b.dtype.is_floating_point or t.dtype.is_floating_point
    exact = ws.mask(0, shape)
    if b.dtype == t.dtype:
        _differ(_bits(b), _bits(t), exact)
    else:
        torch.ne(b.to(torch.float64), t.to(torch.float64), out=exact)
    if not floating:
        base = b.to(torch.float64)
        delta = t.to(torch.float64) - base
        masks = {tolerance_key(tau): exact for tau in tolerances}
        return Block(masks | {EXACT: exact, BF16: exact}, delta, base, delta.abs())
    if b.dtype == t.dtype == torch.bfloat16:
        bf16 = exact
    else:
        # Rounding only the changed elements (bf16 ⊆ exact) measured slower than rounding the
        # whole block even at 0.5% density: the gather and scatter cost more than they save.
        bb, tb = ws.bf16(0, shape).copy_(b), ws.bf16(1, shape).copy_(t)
        bf16 = _differ(_bits(bb), _bits(tb), ws.mask(1, shape))
    if torch.float64 in (b.dtype, t.dtype):
        base = b.to(torch.float64)
        delta = t.to(torch.float64) - base
        magnitude = delta.abs()
    else:
        base = b if b.dtype == torch.float32 else ws.floats(0, shape).copy_(b)
        tuned = t if t.dtype == torch.float32 else ws.floats(1, shape).copy_(t)
        delta = torch.sub(tuned, base, out=ws.floats(2, shape))
        magnitude = torch.abs(delta, out=ws.floats(3, shape))
    masks = {EXACT: exact, BF16: bf16}
    mag = magnitude.numpy()
    for i, tau in enumerate(tolerances):
        # τ in the block's dtype (NumPy 2 would not promote a float32 array anyway); numpy's
        # comparison into a reused buffer is 2-4× faster than torch.gt here.
        out = ws.mask(2 + i, shape)
        np.greater(mag, mag.dtype.type(tau), out=out.numpy())
        masks[tolerance_key(tau)] = out
    return Block(masks, delta, base, magnitude)


def _row_counts(mask: np.ndarray) -> np.ndarray:
    """Set elements per row: popcount of the row's packed bits (3× numpy's count_nonzero)."""
    return np.bitwise_count(np.packbits(mask, axis=1)).sum(axis=1, dtype=np.int64)


def _col_counts(mask: np.ndarray) -> np.ndarray:
    return mask.view(np.uint8).sum(axis=0, dtype=np.int32)  # int32: 2-3× int64's speed


def diff_tensor(
    base: WeightSource,
    tuned: WeightSource,
    spec: TensorSpec,
    tuned_spec: TensorSpec,
    config: DiffConfig,
    *,
    buffers: tuple[np.ndarray, np.ndarray],
    workspace: Workspace | None = None,
    mask_writer: MaskWriter | None = None,
    on_mask: Callable[[np.ndarray], None] | None = None,
    reference: ReferenceCounts | None = None,
) -> TensorStats:
    """Stream one tensor of both sources and count its changes under every criterion (and,
    given `reference`, as the seed's check_sparsity.py counts them)."""
    criteria = config.criteria
    two_d = len(spec.shape) == 2
    n_rows, row_numel = spec.rows, spec.row_numel
    changed = dict.fromkeys(criteria, 0)
    rows = {c: np.zeros(n_rows, dtype=np.int32) for c in criteria} if two_d else {}
    cols = {c: np.zeros(row_numel, dtype=np.int64) for c in criteria} if two_d else {}
    dense, ranks = _rank_buffer(spec, tuned_spec, config)
    delta_sq = base_sq = max_abs = 0.0
    step = block_rows(spec, config.block_mb)
    ref_dtype = reference_dtype(config.reference_dtype) if reference is not None else None
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        b = base.read(spec.name, start, stop, buffers[0])  # (stop - start, row_numel)
        t = tuned.read(spec.name, start, stop, buffers[1])
        if reference is not None:
            reference.add_block(b, t, ref_dtype, config.tolerances)
        block = compare_block(b, t, config.tolerances, workspace)
        if dense is not None:
            dense[start:stop] = block.delta.numpy()
        if block.delta.numel():
            delta_sq += sum_squares(block.delta.numpy())
            base_sq += sum_squares(block.base.numpy())
            max_abs = max(max_abs, nan_max(block.magnitude.numpy()))
        for criterion, mask in block.masks.items():
            m = mask.numpy()
            if two_d:
                per_row = _row_counts(m)
                rows[criterion][start:stop] = per_row
                changed[criterion] += int(per_row.sum())
                cols[criterion] += _col_counts(m)
            else:
                changed[criterion] += int(np.count_nonzero(m))
        packed = np.packbits(block.masks[config.mask_criterion].numpy().reshape(-1))
        if mask_writer is not None and packed.size:
            mask_writer.write(spec.name, packed)
        if on_mask is not None:
            on_mask(packed)
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


def _rank_buffer(
    spec: TensorSpec, tuned_spec: TensorSpec, config: DiffConfig
) -> tuple[np.ndarray | None, RankStats | None]:
    """The dense ΔW buffer when ranks are wanted and fit the budget; else why they are skipped."""
    if not config.ranks:
        return None, None
    if len(spec.shape) != 2:
        return None, None  # vectors and scalars have no rank table row
    if not (spec.is_float and tuned_spec.is_float):
        return None, skipped("integer tensor")
    need = rank_bytes((spec.shape[0], spec.shape[1]))
    budget = config.rank_memory_mb << 20
    if need > budget:
        return None, skipped(
            f"needs {need / 2**20:.0f} MB for its full spectrum, over the "
            f"{config.rank_memory_mb} MB budget (rank_memory_mb)"
        )
    return np.empty(spec.shape, dtype=np.float32), None
