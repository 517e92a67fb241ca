"""The fused chunk kernel (engine.sparsity.kernel) against the numpy pipeline it replaces
(`stream._chunk_stats`): the same counts, row/column counts and masks bit for bit, norms within
1e-6 relative of its float32 rows and 1e-12 of a float64 sum, chunk by chunk, in bf16, fp16 and
fp32, on sparse and dense updates, odd shapes and every special value; and its decoding and bf16
rounding against numpy's and torch's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.sparsity import DiffConfig, kernel, stream
from engine.sparsity.config import tolerance_key
from engine.sparsity.reader import TensorInfo

BITS = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32}
TORCH = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
F32_MAX = float(np.finfo(np.float32).max)


class ArrayMaps:
    """Stands in for stream.MappedFiles: one tensor's storage bits in memory."""

    def __init__(self, bits: np.ndarray) -> None:
        self.bits = bits.reshape(-1)

    def elements(self, info: TensorInfo, first: int, count: int) -> np.ndarray:
        return self.bits[first : first + count]

    def release(self, info: TensorInfo, first: int, count: int) -> None:
        pass


def to_bits(values: np.ndarray, code: str) -> np.ndarray:
    """float32 values stored in `code`, as their storage bits."""
    tensor = torch.from_numpy(np.ascontiguousarray(values, np.float32)).to(TORCH[code])
    return tensor.view(torch.int16 if code != "F32" else torch.int32).numpy().view(BITS[code])


def job(base: np.ndarray, tuned: np.ndarray, code: str, shape, config, *, ranks: bool = False):
    info = TensorInfo("w", code, tuple(shape), Path("none"), 0)
    taus = [(tolerance_key(t), np.float32(t)) for t in config.tolerances]
    dense = np.zeros(shape, np.float32) if ranks else None
    return stream._Job(
        (ArrayMaps(base), ArrayMaps(tuned)), (info, info), config, taus, dense, None, None
    )


def floats(bits: np.ndarray, code: str) -> np.ndarray:
    signed = torch.from_numpy(bits.view(np.int16 if code != "F32" else np.int32))
    return signed.view(TORCH[code]).float().numpy()


def float64_sums(base: np.ndarray, tuned: np.ndarray, code: str) -> tuple[float, float]:
    """Σ base² and Σ Δ² (Δ in float32) summed in float64 by numpy."""
    b, t = floats(base, code), floats(tuned, code)
    with np.errstate(invalid="ignore", over="ignore"):
        d = (t - b).astype(np.float64)
        b64 = b.astype(np.float64)
    return float(np.dot(b64, b64)), float(np.dot(d, d))


def same_norm(new: float, ref: float) -> bool:
    """Equal within 1e-6 relative (the numpy path sums float32 rows of 4096; the kernel sums
    in float64, so where a float32 square overflows, |x| > 1.8e19, its inf is finite here)."""
    if math.isnan(ref) or math.isnan(new):
        return math.isnan(ref) and math.isnan(new)
    if math.isinf(ref) and not math.isinf(new):
        return new > F32_MAX
    return new == pytest.approx(ref, rel=1e-6, abs=1e-30)


def assert_kernel_matches(base, tuned, code, shape, config, chunk_numel, *, ranks=False) -> None:
    """Every chunk of the tensor through both paths: the same ChunkStats."""
    ref_job = job(base, tuned, code, shape, config, ranks=ranks)
    new_job = job(base, tuned, code, shape, config, ranks=ranks)
    info = ref_job.infos[0]
    parts = stream.chunks(info, chunk_numel)
    ws = stream.MappedWorkspace(max(c.numel for c in parts), len(config.tolerances))
    for chunk in parts:
        ref = stream._diff_chunk(ref_job, chunk, ws)
        new = stream._kernel_stats(new_job, chunk, kernel)
        where = (code, shape, chunk)
        assert new.changed == ref.changed, where
        assert set(new.rows) == set(ref.rows) and set(new.cols) == set(ref.cols), where
        for criterion in ref.rows:
            assert np.array_equal(new.rows[criterion], ref.rows[criterion]), (criterion, where)
            assert np.array_equal(new.cols[criterion], ref.cols[criterion]), (criterion, where)
        assert np.array_equal(new.packed, ref.packed), where
        assert same_norm(new.base_sq, ref.base_sq), (new.base_sq, ref.base_sq, where)
        assert same_norm(new.delta_sq, ref.delta_sq), (new.delta_sq, ref.delta_sq, where)
        part = slice(chunk.first, chunk.first + chunk.numel)
        truth = float64_sums(base.reshape(-1)[part], tuned.reshape(-1)[part], code)
        got = (new.base_sq, new.delta_sq)
        assert np.allclose(got, truth, rtol=1e-12, atol=0, equal_nan=True), (got, truth, where)
        # diff_mapped keeps max(0, …) of the chunks' maxima: a chunk whose every Δ is NaN
        # adds nothing, whichever way it reports that.
        assert max(0.0, new.max_abs) == max(0.0, ref.max_abs), where
    if ranks:
        assert np.array_equal(new_job.dense, ref_job.dense, equal_nan=True)


def planted(shape, code: str, rng: np.random.Generator, share: float):
    """Base bits and tuned bits with `share` of the elements changed by 0.5, by 3e-6 (between
    the tolerances) or by one ulp (exact only)."""
    numel = math.prod(shape)
    base = to_bits(rng.standard_normal(numel).astype(np.float32) * 0.05, code)
    tuned = base.copy()
    picked = rng.choice(numel, max(1, int(numel * share)), replace=False)
    values = torch.from_numpy(base.view(np.int16 if code != "F32" else np.int32))
    floats = values.view(TORCH[code]).float().numpy()
    kind = np.arange(picked.size) % 3
    big, small = picked[kind == 0], picked[kind == 1]
    tuned[big] = to_bits(floats[big] + 0.5, code)
    tuned[small] = to_bits(floats[small] + 3e-6, code)
    tuned[picked[kind == 2]] ^= 1
    return base, tuned


SHAPES = [(37, 24), (24, 37), (64, 16), (9, 4096), (1001,), (3, 5, 7), (10_000,), (1,), (8,)]


@pytest.mark.parametrize("code", ["BF16", "F16", "F32"])
@pytest.mark.parametrize("share", [0.05, 1.0])
def test_planted_updates_match_numpy(code, share) -> None:
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        base, tuned = planted(shape, code, rng, share)
        for chunk_numel in (stream.CHUNK_NUMEL, 24, 40):
            for criterion in ("auto", "exact", "bf16", "1e-05"):
                config = DiffConfig(mask_criterion=criterion)
                assert_kernel_matches(base, tuned, code, shape, config, chunk_numel)


@pytest.mark.parametrize("code", ["BF16", "F16", "F32"])
def test_dense_delta_for_ranks(code) -> None:
    rng = np.random.default_rng(1)
    base, tuned = planted((40, 24), code, rng, 0.3)
    config = DiffConfig(ranks=True, tolerances=(1e-4, 1e-5, 1e-6))
    assert_kernel_matches(base, tuned, code, (40, 24), config, 40, ranks=True)


SPECIAL = [0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1e-40, -1e-45, 6e-8, 1.0, 3e38, 1e-3]


@pytest.mark.parametrize("code", ["BF16", "F16", "F32"])
def test_special_values_match(code) -> None:
    """NaN, ±inf, ±0, subnormals and huge values on either side, equal or not."""
    rng = np.random.default_rng(2)
    special = np.array(SPECIAL, np.float32)
    for shape in [(16, 24), (13, 7), (500,)]:
        numel = math.prod(shape)
        base = to_bits(rng.choice(special, numel), code)
        tuned = base.copy()
        changed = rng.random(numel) < 0.5
        tuned[changed] = to_bits(rng.choice(special, int(changed.sum())), code)
        for criterion in ("exact", "bf16", "1e-06"):
            config = DiffConfig(mask_criterion=criterion)
            assert_kernel_matches(base, tuned, code, shape, config, 64)


@pytest.mark.parametrize("code", ["BF16", "F16"])
def test_every_16_bit_pattern_through_the_kernel(code) -> None:
    """All 65536 patterns as the base, against a shuffle of them and against themselves."""
    rng = np.random.default_rng(3)
    base = np.arange(1 << 16, dtype=np.uint16)
    tuned = rng.permutation(base)
    tuned[: 1 << 14] = base[: 1 << 14]  # a quarter unchanged
    config = DiffConfig(mask_criterion="bf16")
    assert_kernel_matches(base, tuned, code, (256, 256), config, 1 << 14)
    assert_kernel_matches(base, tuned, code, (1 << 16,), config, 1 << 14)


def test_random_fp32_bit_patterns() -> None:
    rng = np.random.default_rng(4)
    base = rng.integers(0, 1 << 32, 1 << 14, dtype=np.uint32)
    tuned = base.copy()
    tuned[::3] = rng.integers(0, 1 << 32, tuned[::3].size, dtype=np.uint32)
    tuned[1::3] ^= 1  # one ulp, or one payload bit of a NaN
    assert_kernel_matches(base, tuned, "F32", (128, 128), DiffConfig(mask_criterion="bf16"), 4096)


def test_decode_every_16_bit_pattern() -> None:
    bits = np.arange(1 << 16, dtype=np.uint16)
    expected = {
        "BF16": torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy(),
        "F16": bits.view(np.float16).astype(np.float32),
    }
    for code, want in expected.items():
        got = kernel.decode_bits(bits, kernel.KINDS[code])
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), code  # NaNs too


def test_bf16_rounding_matches_torch() -> None:
    """Round to nearest even on the float32 bits, as torch's .to(torch.bfloat16); a NaN stays
    a NaN (torch's NaN bits differ by its code path, so only that is compared)."""
    rng = np.random.default_rng(5)
    edges = np.array(
        [
            0x00000000,
            0x80000000,
            0x7F800000,
            0xFF800000,
            0x7FC00000,
            0xFFC00001,
            0x7F800001,
            0x00000001,
            0x807FFFFF,
            0x00008000,
            0x00018000,
            0x3F808000,
            0x3F818000,
            0x3F807FFF,
            0x7F7FFFFF,
            0xFF7FFFFF,
            0x7F7F8000,
            0x7F7F7FFF,
            0x00800000,
            0x007F8000,
        ],
        np.uint32,
    )
    values = np.concatenate([edges, rng.integers(0, 1 << 32, 1 << 18, dtype=np.uint32)])
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    for floats, source in (
        (values.view(np.float32), torch.from_numpy(values.view(np.float32))),
        (halves.astype(np.float32), torch.from_numpy(halves)),  # fp16 → bf16, as torch does
    ):
        want = source.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        got = kernel.bf16_bits(np.ascontiguousarray(floats))
        nan = np.isnan(floats)
        assert np.array_equal(got[~nan], want[~nan])
        decoded = kernel.decode_bits(got[nan], kernel.KINDS["BF16"])
        assert np.isnan(decoded).all()


def test_max_abs_from_bits() -> None:
    assert kernel.max_abs(-1) != kernel.max_abs(-1)  # NaN: every Δ was NaN
    assert kernel.max_abs(int(np.float32(0.5).view(np.int32))) == 0.5


def test_warm_is_once_per_process() -> None:
    kernel.warm()
    assert kernel.warm() == 0.0


def test_no_writable_cache_folder_compiles_per_process(monkeypatch) -> None:
    """numba raises at decoration when it finds no folder to cache in; the kernels then
    compile in each process instead (nothing is compiled here)."""
    import importlib.util

    from numba.core import caching

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    spec = importlib.util.spec_from_file_location("kernel_without_cache", kernel.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert type(module.chunk_kernel._cache).__name__ == "NullCache"
    assert type(kernel.chunk_kernel._cache).__name__ != "NullCache"
