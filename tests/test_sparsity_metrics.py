"""engine.sparsity numerics against plain reference computations: localization, ranks, bf16
visibility on crafted values, bit-packed masks, coverage and Jaccard, shells, the reader."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
import torch

from engine.errors import SubnetScopeError
from engine.sparsity import (
    DiffConfig,
    MaskSet,
    TensorDictSource,
    compute_diff,
    coverage,
    depth_profile,
    gini,
    jaccard,
    normalized_entropy,
    overlap_table,
    pack,
    parse_criterion,
    shell_boundaries,
    top_k_share,
    unpack,
    update_ranks,
)
from engine.sparsity.ranks import EPS32
from engine.sparsity.reader import read_header, read_rows
from engine.sparsity.stats import compare_block

# --- localization --------------------------------------------------------------------------------


def ref_gini(x: list[float]) -> float:
    """The textbook double sum, normalized so that everything in one layer gives 1."""
    n, total = len(x), sum(x)
    g = sum(abs(a - b) for a in x for b in x) / (2 * n * total)
    return g * n / (n - 1)


def ref_entropy(x: list[float]) -> float:
    total = sum(x)
    return -sum(v / total * math.log(v / total) for v in x if v > 0) / math.log(len(x))


@pytest.mark.parametrize(
    "values",
    [[1, 1, 1, 1], [0, 0, 5, 0], [3, 1, 4, 1, 5, 9, 2, 6], [0.1, 0.0, 2.5, 7.25, 0.0]],
)
def test_localization_metrics_equal_the_reference(values) -> None:
    assert gini(values) == pytest.approx(ref_gini(values), abs=1e-12)
    assert normalized_entropy(values) == pytest.approx(ref_entropy(values), abs=1e-12)
    for k in (1, 2, 3):
        assert top_k_share(values, k) == pytest.approx(sum(sorted(values)[::-1][:k]) / sum(values))


@pytest.mark.parametrize("seed", range(5))
def test_gini_equals_the_pairwise_double_sum(seed) -> None:
    """Independent of the sorted form the engine uses: Σᵢ Σⱼ |xᵢ − xⱼ| / (2 n² mean), over every
    ordered pair, times n/(n−1) — the seed's scaling ("1 = concentrated in one layer")."""
    rng = np.random.default_rng(seed)
    x = rng.exponential(size=int(rng.integers(2, 40))) * (rng.random() < 0.5 or 1e6)
    x[rng.random(x.size) < 0.3] = 0.0
    x[0] = max(x[0], 1.0)
    n = x.size
    pairs = np.abs(x[:, None] - x[None, :]).sum()
    expected = pairs / (2 * n**2 * x.mean()) * n / (n - 1)
    assert gini(x) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("n", "k"), [(2, 1), (12, 1), (12, 3), (30, 29), (30, 30)])
def test_gini_of_k_equal_layers_among_n(n, k) -> None:
    """Planted truth: k equal layers and n − k empty ones. The pairs that differ are the
    2·k·(n−k) (full, empty) ones, so the double sum gives (n−k)/n, scaled: (n−k)/(n−1)."""
    values = [5.0] * k + [0.0] * (n - k)
    assert gini(values) == pytest.approx((n - k) / (n - 1), abs=1e-12)


def test_localization_extremes() -> None:
    assert gini([2, 2, 2]) == pytest.approx(0.0)
    assert gini([0, 0, 7]) == pytest.approx(1.0)
    assert normalized_entropy([2, 2, 2]) == pytest.approx(1.0)
    assert normalized_entropy([0, 0, 7]) == 0.0
    assert math.isnan(gini([0, 0])) and math.isnan(gini([4]))


def test_depth_profile_interpolates_on_normalized_depth() -> None:
    profile = depth_profile([0.0, 1.0, 4.0], grid=5)  # layers at depth 0, 0.5, 1
    assert profile["depth"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert profile["value"].tolist() == pytest.approx([0.0, 0.5, 1.0, 2.5, 4.0])


# --- ranks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma_max", [1e-2, 1e-4, 1e-5, 1e-6])
def test_stable_rank_is_exact_and_the_seeds_is_that_times_its_factor(sigma_max) -> None:
    """ranks.py's docstring: seed 000's get_stable_rank divides by σ_max² + 1e-10, so it is the
    exact stable rank times σ_max² / (σ_max² + 1e-10) — half of it at σ_max = 1e-5."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((96, 64)).astype(np.float32)
    d = (g * (sigma_max / np.linalg.svd(g, compute_uv=False)[0])).astype(np.float32)
    t = torch.from_numpy(d)
    seed = float(torch.sum(t * t) / (torch.linalg.norm(t, ord=2) ** 2 + 1e-10))
    exact = float((np.linalg.svd(d.astype(np.float64), compute_uv=False) ** 2).sum()) / sigma_max**2
    got = update_ranks(d.copy()).stable_rank
    assert got == pytest.approx(exact, rel=1e-4)
    assert seed == pytest.approx(got * sigma_max**2 / (sigma_max**2 + 1e-10), rel=1e-4)


@pytest.mark.parametrize(("shape", "rank"), [((64, 48), 5), ((40, 200), 1), ((30, 30), 30)])
def test_ranks_of_sums_of_outer_products(shape, rank) -> None:
    """ΔW = Σᵢ sᵢ uᵢ vᵢᵀ over orthonormal u, v: rank r exactly, σ = s."""
    rng = np.random.default_rng(rank)
    m, n = shape
    u = np.linalg.qr(rng.standard_normal((m, rank)))[0]
    v = np.linalg.qr(rng.standard_normal((n, rank)))[0]
    sigma = np.linspace(10.0, 1.0, rank)
    delta = sum(s * np.outer(u[:, i], v[:, i]) for i, s in enumerate(sigma)).astype(np.float32)
    p = sigma / sigma.sum()
    expected_erank = math.exp(-(p * np.log(p)).sum())
    expected_srank = (np.linalg.norm(delta.astype(np.float64)) / sigma[0]) ** 2
    got = update_ranks(delta.copy())
    assert got.method == "svd"
    assert got.rank == rank == np.linalg.matrix_rank(delta)
    assert got.sigma_max == pytest.approx(10.0, rel=1e-5)
    assert got.rank_tol == pytest.approx(max(shape) * EPS32 * 10.0, rel=1e-4)
    assert got.effective_rank == pytest.approx(expected_erank, rel=1e-4)
    assert got.stable_rank == pytest.approx(expected_srank, rel=1e-4)
    assert got.stable_rank == pytest.approx((sigma**2).sum() / 100.0, rel=1e-4)


def test_rank_tolerance_is_configurable() -> None:
    delta = np.diag([1.0, 1e-3, 1e-6]).astype(np.float32)
    assert update_ranks(delta.copy()).rank == 3
    assert update_ranks(delta.copy(), rtol=1e-4).rank == 2


# --- criteria: bf16 visibility on crafted values -------------------------------------------------


def test_bf16_visibility_on_crafted_values() -> None:
    base = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.5, -2.0]])
    tuned = torch.tensor([[1.0 + 1e-7, 1.0 + 1e-2, 1.0 + 2e-6, 1.0, 0.5 + 5e-6, -2.0 + 0.25]])
    block = compare_block(base, tuned, (1e-5, 1e-6))
    masks, delta = block.masks, block.delta
    # 1+1e-7 rounds to the next float32 (a change) but to 1.0 in bf16 (invisible).
    assert masks["exact"].tolist() == [[True, True, True, False, True, True]]
    assert masks["bf16"].tolist() == [[False, True, False, False, False, True]]
    assert masks["1e-05"].tolist() == [[False, True, False, False, False, True]]
    assert masks["1e-06"].tolist() == [[False, True, True, False, True, True]]
    assert delta.dtype == torch.float32
    assert torch.equal(base, torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.5, -2.0]]))  # inputs untouched


def test_bf16_stored_weights_exact_equals_bf16_visible() -> None:
    base = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.bfloat16)
    tuned = base.clone()
    tuned.view(torch.int16)[0, 1] += 1  # one bf16 ulp
    block = compare_block(base, tuned, (1e-5,))
    masks, delta = block.masks, block.delta
    assert masks["exact"].tolist() == masks["bf16"].tolist() == [[False, True, False]]
    assert delta[0, 1].item() == pytest.approx(2.0**-6)  # the ulp of 2.0 in bf16


def test_criterion_labels() -> None:
    assert parse_criterion("1e-6") == parse_criterion(1e-6) == "1e-06"
    assert parse_criterion("exact") == "exact"
    with pytest.raises(SubnetScopeError, match="unknown change criterion"):
        parse_criterion("often")
    with pytest.raises(SubnetScopeError, match="not one of the tolerances"):
        DiffConfig(tolerances=(1e-5,), mask_criterion="1e-7")


def test_in_memory_diff_counts_every_criterion() -> None:
    w = torch.ones(16, 8)  # at 1.0, bf16 resolves 2**-7: smaller updates vanish
    t = w.clone()
    t[3, 2] += 1.0
    t[9, 7] += 3e-6
    t[15, 0] += 1e-7
    result = compute_diff(
        TensorDictSource("b", {"w": w, "bias": torch.zeros(8)}),
        TensorDictSource("t", {"w": t, "bias": torch.zeros(8)}),
        DiffConfig(mask_criterion="exact", block_mb=0),  # block_mb 0: 8-row blocks
    )
    changed = {
        c: result.counts(c).set_index("tensor").loc["w", "changed"] for c in result.config.criteria
    }
    assert changed == {"1e-05": 1, "1e-06": 2, "exact": 3, "bf16": 1}
    assert result.summary["changed"]["exact"]["changed"] == 3
    assert np.argwhere(result.masks.get("w")).tolist() == [[3, 2], [9, 7], [15, 0]]
    rows, cols = result.row_col_fractions("w", "exact")
    assert rows[[3, 9, 15]].tolist() == [1 / 8] * 3 and rows.sum() == pytest.approx(3 / 8)
    assert cols[[0, 2, 7]].tolist() == [1 / 16] * 3
    assert torch.equal(w, torch.ones(16, 8))  # the in-memory base is untouched


# --- masks ---------------------------------------------------------------------------------------


def test_packed_masks_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    masks = {
        "odd": rng.random((7, 13)) < 0.3,  # 91 bits: not a whole number of bytes
        "vector": rng.random(5) < 0.5,
        "empty": np.zeros((0, 4), dtype=bool),
    }
    for mask in masks.values():
        assert np.array_equal(unpack(pack(mask), mask.shape), mask)
    saved = MaskSet.from_masks(masks, "1e-06")
    saved.save(tmp_path / "m.safetensors")
    loaded = MaskSet.open(tmp_path / "m.safetensors")
    assert loaded.criterion == "1e-06" and loaded.names == list(masks)
    for name, mask in masks.items():
        assert np.array_equal(loaded.get(name), mask)
        assert loaded.count(name) == mask.sum()
    assert (tmp_path / "m.safetensors").stat().st_size < 100 + 12 + 1 + 1024  # 1 bit a weight


def test_coverage_and_jaccard_on_crafted_masks() -> None:
    early = MaskSet.from_masks({"x": np.array([1, 1, 0, 0, 0, 0], bool)}, "exact")
    final = MaskSet.from_masks({"x": np.array([0, 1, 1, 1, 1, 0], bool)}, "exact")
    assert coverage(early, final) == pytest.approx(1 / 4)
    assert coverage(final, final) == 1.0
    assert jaccard(early, final) == pytest.approx(1 / 5)
    table = overlap_table(early, final)
    assert table.loc[0, ["a", "b", "both", "either"]].tolist() == [2, 4, 1, 5]
    other = MaskSet.from_masks({"x": np.zeros((2, 3), bool)}, "exact")
    with pytest.raises(SubnetScopeError, match="differ in shape"):
        jaccard(early, other)


# --- shells and the reader -----------------------------------------------------------------------


def test_shell_boundaries_from_widths_or_boundaries() -> None:
    assert shell_boundaries([2048, 4096, 8192]) == [0, 2048, 4096, 8192]
    assert shell_boundaries([0, 2048, 4096, 8192]) == [0, 2048, 4096, 8192]
    assert shell_boundaries([48, 40, 48]) == [0, 40, 48]
    with pytest.raises(SubnetScopeError):
        shell_boundaries([0])
    assert list(pairwise([0, 40, 48])) == [(0, 40), (40, 48)]


def test_reader_matches_safetensors_for_bf16(tmp_path) -> None:
    from safetensors.torch import save_file

    w = torch.randn(20, 6).to(torch.bfloat16)
    save_file({"w": w, "v": torch.arange(5, dtype=torch.int32)}, tmp_path / "x.safetensors")
    infos, _ = read_header(tmp_path / "x.safetensors")
    assert infos["w"].dtype == "BF16" and infos["v"].shape == (5,)
    assert torch.equal(read_rows(infos["w"], 4, 9), w[4:9])
    assert torch.equal(read_rows(infos["v"], 0, 1).reshape(-1), torch.arange(5, dtype=torch.int32))
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(SubnetScopeError, match="not a valid safetensors file"):
        read_header(tmp_path / "bad.safetensors")
