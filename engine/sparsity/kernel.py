"""The mapped diff's fused kernel: every criterion, count, norm and mask of one chunk, row by row.

Why compiled: the numpy pipeline (`stream._chunk_stats`) makes one pass over the chunk per
statistic and ran at 0.22–0.33× the read bandwidth (issue 19 asks 0.5×). Here each row of a
chunk is read once from the mapping (the exact mask, its count and Σ base²); a row whose
changes are at most a quarter of it (an RL update) then works on its changed elements only
(their Δ, Σ Δ², max |Δ|, the bf16 and τ criteria, row and column counts, mask bits) while the
row is still in cache; a dense row takes one pass for Δ, |Δ| and the exact/bf16 criteria and a
short one per tolerance. Branch-free where a branch would be a coin flip.

Same numbers as `stream._chunk_stats` (tests/test_sparsity_kernel.py): `exact` = the stored bits
differ; `bf16` = the bf16 roundings differ (the bits of a bf16 pair; for fp16 and fp32, torch's
round-to-nearest-even of the float32 bits, every NaN one value); τ = |float32(t) − float32(b)| >
float32(τ). Counts, row/column counts and packed masks are bit-identical; Σ x² is summed in
float64 (within 1e-12 of numpy's float64 sum; `stats.sum_squares` sums float32 rows of 4096 and
agrees to ~1e-7); max |Δ| leaves NaN out. Every criterion is a subset of `exact` (equal bits
give Δ = 0 or NaN, never > τ), so a row without exact changes and with a finite base is done
after its first pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# Storage dtype code → the kernel's kind.
KINDS = {"BF16": 0, "F16": 1, "F32": 2}
_BF16, _F16, _F32 = 0, 1, 2
EXACT_ROW, BF16_ROW = 0, 1  # criterion rows of the outputs; tolerance k is row 2 + k
# A flat chunk (a tensor that is not 2-D) is walked in pieces of this many elements, so the
# per-piece buffers stay in cache; its column counts mean nothing and are not returned.
SEGMENT = 4096
_EXP_MASK = 0x7F800000  # float32 bits of +inf: above it (after abs) is NaN


def _jit(**options: Any) -> Callable[[Callable], Callable]:
    """`njit(nogil=True, cache=True)`; without a writable cache folder (numba then raises at
    decoration) the kernels compile in each process instead."""

    def wrap(fn: Callable) -> Callable:
        try:
            return numba.njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError:  # "cannot cache function …: no locator available"
            return numba.njit(nogil=True, **options)(fn)

    return wrap


@intrinsic
def _as_f32(typingctx: Any, bits: types.Type) -> Any:
    """The float32 whose bits are the low 32 bits of an integer."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        value, i32 = args[0], ir.IntType(32)
        if value.type.width > 32:
            value = builder.trunc(value, i32)
        elif value.type.width < 32:
            value = builder.zext(value, i32)
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _f32_bits(typingctx: Any, value: types.Type) -> Any:
    """The bits of a float32, as an int32."""
    if value != types.float32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(value), codegen


@intrinsic
def _cttz(typingctx: Any, value: types.Type) -> Any:
    """Trailing zero bits of a non-zero integer."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return value(value), codegen


@_jit()
def f16_to_f32(h: int) -> float:
    """fp16 bits → float32, exact (subnormals renormalized by a float subtraction)."""
    o = (np.int32(h) & np.int32(0x7FFF)) << np.int32(13)
    exponent = o & np.int32(0x0F800000)
    o += np.int32(0x38000000)  # rebias 15 → 127
    if exponent == np.int32(0x0F800000):  # inf or NaN: the exponent all ones
        o += np.int32(0x38000000)
    elif exponent == 0:  # zero or subnormal
        o = _f32_bits(_as_f32(o + np.int32(0x00800000)) - _as_f32(np.int32(0x38800000)))
    return _as_f32(o | ((np.int32(h) & np.int32(0x8000)) << np.int32(16)))


@_jit()
def bf16_round(f: float) -> int:
    """torch's float32 → bf16 rounding (round to nearest even; every NaN to one value)."""
    if f != f:
        return 0x7FC0
    u = np.int64(_f32_bits(f)) & 0xFFFFFFFF
    return (u + ((u >> 16) & 1) + 0x7FFF) >> 16


@_jit()
def _magnitude_bits(d: float) -> np.int32:
    """|d|'s bits, or -1 for NaN: the int maximum of these is max |Δ| without NaN."""
    bits = _f32_bits(abs(d))
    return bits if bits <= np.int32(_EXP_MASK) else np.int32(-1)


@_jit(fastmath={"reassoc", "contract"})
def _exact_pass(b, t, kind, m):
    """The first pass over a row: the exact mask as 0/1 bytes, its count, and Σ base² in
    float64."""
    n = np.int32(0)
    total = 0.0
    if kind == _BF16:
        for j in range(b.size):
            x = b[j]
            e = np.uint8(x != t[j])
            m[j] = e
            n += e
            f = np.float64(_as_f32(np.uint32(x) << 16))
            total += f * f
    elif kind == _F16:
        for j in range(b.size):
            x = b[j]
            e = np.uint8(x != t[j])
            m[j] = e
            n += e
            f = np.float64(f16_to_f32(x))
            total += f * f
    else:
        for j in range(b.size):
            x = b[j]
            e = np.uint8(x != t[j])
            m[j] = e
            n += e
            f = np.float64(_as_f32(x))
            total += f * f
    return n, total


@_jit(fastmath={"reassoc", "contract"})
def _sum_sq_top(mags):
    """Σ |Δ|² in float64 and max |Δ|'s bits (-1: none, or all NaN) of gathered magnitudes: a
    loop of its own, so the gather loop carries no float dependency chain."""
    total = 0.0
    top = np.int32(-1)
    for i in range(mags.size):
        f = np.float64(mags[i])
        total += f * f
        top = max(top, _magnitude_bits(mags[i]))
    return total, top


@_jit()
def _set_bits(packed, pos, where, flags, m):
    """Set the packed mask's bit of each gathered change whose flag is 1 (branch-free)."""
    for i in range(m):
        p = pos + where[i]
        packed[p >> 3] |= np.uint8(flags[i] << (7 - (p & 7)))


@_jit()
def _sparse_row(b, t, kind, words, taus, pack, cols, got, packed, pos, where, mags, flags):
    """Every other statistic of a row at its changed elements only, found 64 at a time in
    `words` (the exact mask packed in np.packbits' order, as uint64): Δ, Σ Δ², max |Δ|, the
    bf16 and τ criteria, their row (`got`) and column counts, and the packed mask's bits.

    The changed positions and their |Δ| are gathered into `where` and `mags` first, so each τ
    is one tight loop over them; all of it branch-free (whether a change passes a τ is a coin
    flip to the branch predictor)."""
    m = 0
    n16 = np.int32(0)
    for q in range(words.size):
        w = words[q]
        while w:
            bit = np.int64(_cttz(w))
            w &= w - np.uint64(1)
            j = q * 64 + (bit & ~7) + 7 - (bit & 7)  # the first element is a byte's top bit
            bf, tf = _decode(b[j], kind), _decode(t[j], kind)
            d = tf - bf
            where[m] = j
            mags[m] = abs(d)
            cols[EXACT_ROW, j] += 1
            if kind != _BF16:
                g = np.int32(bf16_round(bf) != bf16_round(tf))
                flags[m] = g
                n16 += g
                cols[BF16_ROW, j] += g
            m += 1
    got[EXACT_ROW] = m
    got[BF16_ROW] = m if kind == _BF16 else n16  # a bf16 pair's bits are its bf16 bits
    delta_sq, top = _sum_sq_top(mags[:m])
    if pack == BF16_ROW:  # never for a bf16 pair (the caller packs exact instead)
        _set_bits(packed, pos, where, flags, m)
    for k in range(taus.size):
        tau = taus[k]
        column = cols[2 + k]
        n = np.int32(0)
        for i in range(m):
            g = np.int32(mags[i] > tau)
            flags[i] = g
            n += g
            column[where[i]] += g
        got[2 + k] = n
        if pack == 2 + k:
            _set_bits(packed, pos, where, flags, m)
    return delta_sq, top


@_jit()
def _pack_words(mask, bits):
    """A 0/1 byte mask (as uint64 words, its tail zeroed) → bits in np.packbits' order: a
    multiply gathers each word's eight bytes into one byte, the first at the top bit."""
    for q in range(mask.size):
        bits[q] = np.uint8((mask[q] * np.uint64(0x8040201008040201)) >> np.uint64(56))


@_jit()
def _row_bf16(b, t, mag, m_exact, c_exact):
    """One row of a bf16 pair: |Δ| into `mag`, the exact mask and its column counts (uint8,
    flushed by the caller); returns the exact count and max |Δ|'s bits."""
    n = np.int32(0)
    top = np.int32(-1)
    for j in range(b.size):
        x, y = b[j], t[j]
        d = _as_f32(np.uint32(y) << 16) - _as_f32(np.uint32(x) << 16)
        mag[j] = abs(d)
        e = np.uint8(x != y)
        m_exact[j] = e
        c_exact[j] += e
        n += e
        top = max(top, _magnitude_bits(d))
    return n, top


@_jit()
def _row_f16(b, t, mag, m_exact, c_exact, m_bf16, c_bf16):
    """One row of an fp16 pair: `_row_bf16` plus the bf16 criterion's mask and counts."""
    n = np.int32(0)
    n16 = np.int32(0)
    top = np.int32(-1)
    for j in range(b.size):
        x, y = b[j], t[j]
        bf, tf = f16_to_f32(x), f16_to_f32(y)
        d = tf - bf
        mag[j] = abs(d)
        e = np.uint8(x != y)
        m_exact[j] = e
        c_exact[j] += e
        n += e
        g = np.uint8(bf16_round(bf) != bf16_round(tf))
        m_bf16[j] = g
        c_bf16[j] += g
        n16 += g
        top = max(top, _magnitude_bits(d))
    return n, n16, top


@_jit()
def _row_f32(b, t, mag, m_exact, c_exact, m_bf16, c_bf16):
    """One row of an fp32 pair: as `_row_f16`, the floats being the bits themselves."""
    n = np.int32(0)
    n16 = np.int32(0)
    top = np.int32(-1)
    for j in range(b.size):
        x, y = b[j], t[j]
        bf, tf = _as_f32(x), _as_f32(y)
        d = tf - bf
        mag[j] = abs(d)
        e = np.uint8(x != y)
        m_exact[j] = e
        c_exact[j] += e
        n += e
        g = np.uint8(bf16_round(bf) != bf16_round(tf))
        m_bf16[j] = g
        c_bf16[j] += g
        n16 += g
        top = max(top, _magnitude_bits(d))
    return n, n16, top


@_jit(fastmath={"reassoc", "contract"})
def _base_sq(b, kind):
    """Σ base² of one row in float64 (a pass of its own over the row, still in cache: fused
    into the row pass it halved that pass's speed, measured)."""
    total = 0.0
    if kind == _BF16:
        for j in range(b.size):
            f = np.float64(_as_f32(np.uint32(b[j]) << 16))
            total += f * f
    elif kind == _F16:
        for j in range(b.size):
            f = np.float64(f16_to_f32(b[j]))
            total += f * f
    else:
        for j in range(b.size):
            f = np.float64(_as_f32(b[j]))
            total += f * f
    return total


@_jit(fastmath={"reassoc", "contract"})
def _sum_sq(x):
    """Σ x² of a float32 row in float64."""
    total = 0.0
    for j in range(x.size):
        f = np.float64(x[j])
        total += f * f
    return total


@_jit()
def _row_tau(mag, tau, m, c):
    """|Δ| > τ over one row: its mask, column counts (uint8) and count."""
    n = np.int32(0)
    for j in range(mag.size):
        g = np.uint8(mag[j] > tau)
        m[j] = g
        c[j] += g
        n += g
    return n


@_jit()
def _flush(counts, wide):
    """Add the uint8 column counts into the int32 ones and zero them."""
    for c in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            wide[c, j] += counts[c, j]
            counts[c, j] = 0


@_jit()
def _decode(x, kind):
    """One element's storage bits → float32."""
    if kind == _BF16:
        return _as_f32(np.uint32(x) << 16)
    if kind == _F16:
        return f16_to_f32(x)
    return _as_f32(x)


@_jit()
def _row_delta(b, t, kind, out):
    """Signed Δ of one row into `out` (the dense ΔW that ranks need)."""
    for j in range(b.size):
        out[j] = _decode(t[j], kind) - _decode(b[j], kind)


@_jit()
def decode_bits(bits, kind):
    """A 1-D array of storage bits → float32, as the kernel reads them (tests check it)."""
    out = np.empty(bits.size, np.float32)
    for j in range(bits.size):
        out[j] = _decode(bits[j], kind)
    return out


@_jit()
def bf16_bits(values):
    """The bf16 bits the kernel's bf16 criterion compares, for a 1-D float32 array."""
    out = np.empty(values.size, np.uint16)
    for j in range(values.size):
        out[j] = bf16_round(values[j])
    return out


@_jit()
def _pack(m, packed, pos):
    """OR a row of 0/1 bytes into `packed` from bit `pos` on, np.packbits' order (the first
    element is the most significant bit); `packed` starts zeroed."""
    n = m.size
    j = 0
    while j < n and (pos + j) & 7:
        if m[j]:
            packed[(pos + j) >> 3] |= np.uint8(0x80 >> ((pos + j) & 7))
        j += 1
    first = (pos + j) >> 3
    for k in range((n - j) >> 3):
        q = j + 8 * k
        packed[first + k] = (
            (m[q] << 7)
            | (m[q + 1] << 6)
            | (m[q + 2] << 5)
            | (m[q + 3] << 4)
            | (m[q + 4] << 3)
            | (m[q + 5] << 2)
            | (m[q + 6] << 1)
            | m[q + 7]
        )
    for q in range(j + ((n - j) >> 3) * 8, n):
        if m[q]:
            packed[(pos + q) >> 3] |= np.uint8(0x80 >> ((pos + q) & 7))


@_jit()
def chunk_kernel(
    b: np.ndarray,
    t: np.ndarray,
    kind: int,
    two_d: bool,
    taus: np.ndarray,
    mask_row: int,
    dense: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float, int]:
    """Every statistic of one (rows, width) chunk of storage bits (uint16 for bf16/fp16,
    uint32 for fp32). Criterion rows: 0 exact, 1 bf16, 2 + k tolerance k (`taus`, float32).

    Returns (changed int64[criteria], rows int32[criteria, rows] (2-D chunks; else no
    columns), cols int32[criteria, width] (2-D chunks; else meaningless), the packed mask of
    criterion `mask_row`, Σ base², Σ Δ², max |Δ|'s bits or -1 when every Δ is NaN). With
    `dense` of the chunk's shape, Δ is written there."""
    n_rows, width = b.shape
    seg = width if two_d else min(width, SEGMENT)
    n_crit = 2 + taus.size
    changed = np.zeros(n_crit, np.int64)
    rows = np.zeros((n_crit, n_rows if two_d else 0), np.int32)
    cols = np.zeros((n_crit, seg), np.int32)
    # Dense rows sum their column counts as uint8 (a count of ≤ 255 rows fits a byte), added
    # to `cols` every 255 dense rows; sparse rows add to `cols` directly.
    counts = np.zeros((n_crit, seg), np.uint8)
    in_counts = 0
    masks = np.zeros((n_crit, seg), np.uint8)
    words = np.zeros((seg + 7) // 8, np.uint64)
    exact = words.view(np.uint8)  # the exact mask as 0/1 bytes
    bits = np.zeros((words.size + 7) // 8 * 8, np.uint8)  # … packed, scanned 64 at a time
    bit_words = bits.view(np.uint64)
    got = np.zeros(n_crit, np.int64)
    mag = np.empty(seg, np.float32)
    where = np.empty(seg, np.int64)
    flags = np.empty(seg, np.int32)
    packed = np.zeros((n_rows * width + 7) // 8, np.uint8)
    pack = EXACT_ROW if kind == _BF16 and mask_row == BF16_ROW else mask_row
    base_sq = 0.0
    delta_sq = 0.0
    top = np.int32(-1)
    for r in range(n_rows):
        for s in range(0, width, seg):
            e = min(s + seg, width)
            n = e - s
            bs, ts = b[r, s:e], t[r, s:e]
            n_exact, row_sq = _exact_pass(bs, ts, kind, exact[:n])
            base_sq += row_sq
            if dense.size:
                _row_delta(bs, ts, kind, dense[r, s:e])
            finite = np.isfinite(row_sq)  # a finite Σ base² proves every base element finite
            if finite and n_exact < n:
                top = max(top, np.int32(0))  # an unchanged element's Δ is exactly 0
            if n_exact == 0 and finite:
                continue  # Δ = 0 everywhere, and every criterion is a subset of exact
            if finite and 4 * n_exact <= n:
                # A sparse row: Δ and the other criteria at its changed elements only.
                exact[n : 8 * words.size] = 0
                _pack_words(words, bits)
                pos = r * width + s
                sd, tp = _sparse_row(
                    bs, ts, kind, bit_words, taus, pack, cols, got, packed, pos, where, mag, flags
                )
                if pack == EXACT_ROW:
                    if pos & 7:
                        flags[: got[EXACT_ROW]] = 1
                        _set_bits(packed, pos, where, flags, got[EXACT_ROW])
                    else:  # whole bytes: the packed exact mask as it is
                        packed[pos >> 3 : (pos + n + 7) >> 3] |= bits[: (n + 7) >> 3]
                delta_sq += sd
                top = max(top, tp)
                changed += got
                if two_d:
                    rows[:, r] = got
                continue
            if kind == _BF16:
                n_exact, tp = _row_bf16(bs, ts, mag[:n], masks[EXACT_ROW, :n], counts[0, :n])
                n_bf16 = n_exact
            elif kind == _F16:
                n_exact, n_bf16, tp = _row_f16(
                    bs, ts, mag[:n], masks[0, :n], counts[0, :n], masks[1, :n], counts[1, :n]
                )
            else:
                n_exact, n_bf16, tp = _row_f32(
                    bs, ts, mag[:n], masks[0, :n], counts[0, :n], masks[1, :n], counts[1, :n]
                )
            top = max(top, tp)
            delta_sq += _sum_sq(mag[:n])
            in_counts += 1
            if in_counts == 255:
                _flush(counts, cols)
                in_counts = 0
            changed[EXACT_ROW] += n_exact
            changed[BF16_ROW] += n_bf16
            if two_d:
                rows[EXACT_ROW, r] = n_exact
                rows[BF16_ROW, r] = n_bf16
            for k in range(taus.size):
                got_k = _row_tau(mag[:n], taus[k], masks[2 + k, :n], counts[2 + k, :n])
                changed[2 + k] += got_k
                if two_d:
                    rows[2 + k, r] = got_k
            _pack(masks[pack, :n], packed, r * width + s)
    _flush(counts, cols)
    if kind == _BF16:  # the stored bits are the bf16 bits
        cols[BF16_ROW] = cols[EXACT_ROW]
    return changed, rows, cols, packed, base_sq, delta_sq, top


def max_abs(top: int) -> float:
    """max |Δ| from the kernel's bits (NaN when every Δ was NaN)."""
    if top < 0:
        return float("nan")
    return float(np.array(top, np.int32).view(np.float32))


_warm = False


def warm() -> float:
    """Compile (or load from numba's cache) the kernel for every kind once per process; the
    seconds it took. Called before the chunk threads start."""
    global _warm
    if _warm:
        return 0.0
    started = time.perf_counter()
    taus = np.zeros(2, np.float32)
    none = np.empty((0, 0), np.float32)
    for dtype, kind in ((np.uint16, _BF16), (np.uint16, _F16), (np.uint32, _F32)):
        x = np.zeros((2, 8), dtype)
        chunk_kernel(x, x, kind, True, taus, 0, none)
        chunk_kernel(x, x, kind, True, taus, 0, np.empty((2, 8), np.float32))
    _warm = True
    return time.perf_counter() - started
