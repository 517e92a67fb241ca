"""The mapped diff (engine.sparsity.stream) against the block-copying path it replaced
(`compute_diff(mapped=False)`, kept as the reference): identical counts, row/column counts and
masks, norms within 1e-6; planted sparse updates found at exactly their indices, in bf16, fp16
and fp32, at chunk sizes that divide nothing, over sharded folders, with threads; every test runs
once through the compiled kernel and once through the numpy pipeline (`stream.KERNEL`)."""

from __future__ import annotations

import importlib
import itertools
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.errors import SubnetScopeError
from engine.sparsity import DiffConfig, compute_diff, stream
from engine.sparsity.resolve import open_source

# `engine.sparsity.diff` names the function there; the module is where compute_diff looks.
diff_module = importlib.import_module("engine.sparsity.diff")
mapped = stream.diff_mapped
DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
SHAPES = {  # odd widths and heights on purpose: chunks split rows and bytes unevenly
    "model.layers.0.mlp.up_proj.weight": (37, 24),
    "model.layers.0.mlp.down_proj.weight": (24, 37),
    "model.layers.1.self_attn.q_proj.weight": (64, 16),
    "model.layers.1.mlp.gate_proj.weight": (40, 16),  # a dense update (every element)
    "model.layers.1.input_layernorm.weight": (1001,),
    "model.layers.1.conv.weight": (3, 5, 7),
    "model.unchanged.weight": (19, 8),
    "model.empty.weight": (0, 8),
    "model.scalar": (),
}
CHANGED = "model.layers.0.mlp.up_proj.weight"


def _planted(shape: tuple[int, ...], dtype: torch.dtype, rng: np.random.Generator, name: str):
    """A base tensor and a tuned copy with a planted sparse update; the planted flat indices."""
    numel = math.prod(shape)
    base = torch.from_numpy(rng.standard_normal(numel).astype(np.float32) * 0.05).to(dtype)
    tuned = base.clone()
    if name in ("model.unchanged.weight", "model.empty.weight") or numel == 0:
        return base.reshape(shape), tuned.reshape(shape), np.zeros(0, np.int64)
    share = 1 if "gate_proj" in name else 20
    picked = np.sort(rng.choice(numel, max(1, numel // share), replace=False))
    # Three sizes: visible everywhere, between the tolerances, and one ulp (exact only).
    sizes = np.array([0.5, 3e-6, 0.0])[np.arange(picked.size) % 3]
    for i, size in zip(picked, sizes, strict=True):
        if size:
            tuned[i] = base[i].float() + size if dtype != torch.float32 else base[i] + size
        else:
            bits = tuned.view(torch.int16 if dtype != torch.float32 else torch.int32)
            bits[i] ^= 1
    changed = np.flatnonzero((tuned.view(-1) != base.view(-1)).numpy())
    return base.reshape(shape), tuned.reshape(shape), changed


def write_pair(root, dtype: str, *, tuned_dtype: str | None = None, seed: int = 0) -> dict:
    """A base and tuned folder, each two shards with an index; what was planted where."""
    rng = np.random.default_rng(seed)
    torch_dtype = DTYPES[dtype]
    base, tuned, planted = {}, {}, {}
    for name, shape in SHAPES.items():
        base[name], tuned[name], planted[name] = _planted(shape, torch_dtype, rng, name)
    if tuned_dtype is not None:
        tuned = {k: v.to(DTYPES[tuned_dtype]) for k, v in tuned.items()}
    names = list(SHAPES)
    shards = {
        "model-00001-of-00002.safetensors": names[:4],
        "model-00002-of-00002.safetensors": names[4:],
    }
    for side, state in (("base", base), ("tuned", tuned)):
        folder = root / side
        folder.mkdir()
        for file, members in shards.items():
            save_file({n: state[n].contiguous() for n in members}, folder / file)
        weight_map = {n: f for f, members in shards.items() for n in members}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return {"base": root / "base", "tuned": root / "tuned", "planted": planted}


def run(pair: dict, tmp_path, *, mapped: bool, config: DiffConfig | None = None, tag: str = ""):
    """compute_diff as the CLI runs it (masks streamed to a folder), mapped or block by block."""
    out = tmp_path / f"{'mapped' if mapped else 'blocks'}{tag}"
    out.mkdir()
    sources = open_source(pair["base"]), open_source(pair["tuned"])
    return compute_diff(*sources, config or DiffConfig(), out_dir=out, mapped=mapped)


def assert_same(new, old) -> None:
    """Counts, masks and neuron counts bit for bit; norms within 1e-6 relative."""
    ints = ["numel", "changed", "exact_changed", "bf16_changed"]
    pd_new, pd_old = new.tensors, old.tensors
    assert pd_new["tensor"].tolist() == pd_old["tensor"].tolist()
    assert pd_new[ints].equals(pd_old[ints])
    for column in ("delta_norm", "base_norm", "max_abs_delta"):
        assert np.allclose(pd_new[column], pd_old[column], rtol=1e-6, atol=0, equal_nan=True)
    assert new.summary["changed"] == old.summary["changed"]
    assert new.summary["rel_norm"] == pytest.approx(old.summary["rel_norm"], rel=1e-6, nan_ok=True)
    assert new.summary["mismatch"] == old.summary["mismatch"]
    assert set(new.neuron_counts) == set(old.neuron_counts)
    for key, counts in old.neuron_counts.items():
        assert np.array_equal(new.neuron_counts[key], counts), key
    assert set(new.masks.names) == set(old.masks.names)
    for name in old.masks.names:
        assert np.array_equal(new.masks.get(name), old.masks.get(name)), name


@pytest.fixture(autouse=True, params=["kernel", "numpy"])
def chunk_path(request, monkeypatch) -> str:
    """Chunks through engine.sparsity.kernel, or through the numpy `_chunk_stats`."""
    monkeypatch.setattr(stream, "KERNEL", request.param == "kernel")
    return request.param


def test_the_chosen_path_takes_every_chunk(chunk_path, tmp_path, monkeypatch) -> None:
    pair = write_pair(tmp_path, "BF16", seed=7)
    calls = {"kernel": 0, "numpy": 0}
    kernel_stats, numpy_stats = stream._kernel_stats, stream._chunk_stats
    monkeypatch.setattr(
        stream, "_kernel_stats", lambda *a: calls.__setitem__("kernel", 1) or kernel_stats(*a)
    )
    monkeypatch.setattr(
        stream, "_chunk_stats", lambda *a: calls.__setitem__("numpy", 1) or numpy_stats(*a)
    )
    run(pair, tmp_path, mapped=True)
    assert calls == {"kernel": chunk_path == "kernel", "numpy": chunk_path == "numpy"}


@pytest.fixture(params=[stream.CHUNK_NUMEL, 24, 40])
def chunk(request, monkeypatch) -> int:
    """The default chunk, and chunk sizes that divide neither the rows nor the bytes."""
    monkeypatch.setattr(stream, "CHUNK_NUMEL", request.param)
    return request.param


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
def test_mapped_equals_blocks_and_finds_planted_indices(
    dtype, chunk, tmp_path, monkeypatch
) -> None:
    pair = write_pair(tmp_path, dtype)
    config = DiffConfig(mask_criterion="exact")
    calls = []
    monkeypatch.setattr(
        diff_module, "diff_mapped", lambda *a, **k: calls.append(1) or mapped(*a, **k)
    )
    new = run(pair, tmp_path, mapped=True, config=config)
    assert len(calls) == len(SHAPES)  # every tensor took the mapped kernels
    old = run(pair, tmp_path, mapped=False, config=config)
    assert_same(new, old)
    for name, planted in pair["planted"].items():
        assert np.array_equal(np.flatnonzero(new.masks.get(name)), planted), name
    counts = new.counts("exact").set_index("tensor")["changed"]
    assert counts["model.unchanged.weight"] == 0 and counts["model.empty.weight"] == 0
    # The 1-ulp third of the planted changes is below both tolerances.
    assert new.summary["changed"]["1e-06"]["changed"] < new.summary["changed"]["exact"]["changed"]


def test_default_mask_criterion_ranks_and_reference_agree(tmp_path) -> None:
    pair = write_pair(tmp_path, "BF16", seed=1)
    config = DiffConfig(ranks=True, reference=True)
    new = run(pair, tmp_path, mapped=True, config=config)
    old = run(pair, tmp_path, mapped=False, config=config)
    assert_same(new, old)
    assert new.reference.equals(old.reference)
    assert new.summary["reference"] == old.summary["reference"]
    ranks = ["rank", "max_rank"]
    assert new.ranks[ranks].equals(old.ranks[ranks])


def test_two_threads_equal_one(tmp_path, monkeypatch) -> None:
    pair = write_pair(tmp_path, "F32", seed=2)
    monkeypatch.setattr(stream, "CHUNK_NUMEL", 40)
    monkeypatch.setattr(stream, "WORKERS", 2)
    two = run(pair, tmp_path, mapped=True, tag="2")
    monkeypatch.setattr(stream, "WORKERS", 1)
    one = run(pair, tmp_path, mapped=True, tag="1")
    assert_same(two, one)
    assert two.tensors[["delta_norm", "base_norm"]].equals(one.tensors[["delta_norm", "base_norm"]])


def test_mixed_precision_pair_takes_the_block_path_unchanged(tmp_path) -> None:
    """An fp32 base against a bf16 run: the kernels do not map it; both paths give one answer."""
    pair = write_pair(tmp_path, "F32", tuned_dtype="BF16", seed=3)
    new = run(pair, tmp_path, mapped=True)
    old = run(pair, tmp_path, mapped=False)
    assert_same(new, old)
    assert set(new.tensors["dtype"]) == {"F32->BF16"}


def test_special_values_match(tmp_path) -> None:
    """NaN, ±inf and ±0 in the base and the update count as compare_block counts them."""
    values = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1.0, 2.0, 3.0])
    for dtype in ("BF16", "F32"):
        folder = tmp_path / dtype
        folder.mkdir()
        base = values.repeat(8, 2).to(DTYPES[dtype])  # (8, 16)
        tuned = base.clone()
        tuned[0, :8] = torch.tensor([-0.0, 0.0, float("nan"), 1.0, float("nan"), 1.0, 2.5, 3.0])
        tuned[3, 8:] = float("nan")
        pair = {"base": folder / "b.safetensors", "tuned": folder / "t.safetensors"}
        save_file({"w": base}, pair["base"])
        save_file({"w": tuned}, pair["tuned"])
        config = DiffConfig(mask_criterion="exact")
        assert_same(
            run(pair, folder, mapped=True, config=config),
            run(pair, folder, mapped=False, config=config),
        )


def test_tensors_in_one_file_only_are_reported_alike(tmp_path) -> None:
    pair = write_pair(tmp_path, "BF16", seed=4)
    extra = tmp_path / "tuned" / "model-00002-of-00002.safetensors"
    from safetensors.torch import load_file

    state = load_file(extra) | {"model.extra.weight": torch.zeros(4, 4, dtype=torch.bfloat16)}
    save_file(state, extra)
    index = tmp_path / "tuned" / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.extra.weight"] = extra.name
    index.write_text(json.dumps(data))
    with pytest.raises(SubnetScopeError, match="only in tuned"):
        run(pair, tmp_path, mapped=True)
    config = DiffConfig(intersection=True)
    new = run(pair, tmp_path, mapped=True, config=config, tag="i")
    old = run(pair, tmp_path, mapped=False, config=config, tag="i")
    assert_same(new, old)
    assert new.summary["mismatch"]["only_tuned"] == ["model.extra.weight"]


def test_chunks_cover_every_element_once() -> None:
    from engine.sparsity.reader import TensorSpec

    for shape, size in [((37, 13), 24), ((37, 13), 1), ((5, 1000), 24), ((1001,), 40), ((), 8)]:
        spec = TensorSpec("x", "BF16", shape)
        parts = stream.chunks(spec, size)
        firsts = [c.first for c in parts]
        assert firsts == sorted(firsts) and firsts[0] == 0
        assert sum(c.numel for c in parts) == spec.numel
        assert all(c.numel % 8 == 0 for c in parts[:-1]), (shape, size)
        assert all(a.first + a.numel == b.first for a, b in itertools.pairwise(parts))


def test_row_and_column_counts_match_numpy() -> None:
    rng = np.random.default_rng(5)
    for shape in [(300, 16), (7, 13), (600, 2048), (1, 8), (256, 24)]:
        mask = rng.random(shape) < 0.3
        assert np.array_equal(stream.row_counts(mask), mask.sum(axis=1))
        assert np.array_equal(stream.col_counts(mask), mask.sum(axis=0))
    full = np.ones((600, 4096), bool)  # a lane count of 255 words, and more
    assert np.array_equal(stream.row_counts(full), full.sum(axis=1))
    assert np.array_equal(stream.col_counts(full), full.sum(axis=0))


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
@pytest.mark.parametrize("criterion", ["auto", "bf16", "1e-05"])
def test_every_mask_criterion_agrees(dtype, criterion, tmp_path, monkeypatch) -> None:
    """The mask of a tolerance or bf16 criterion, built from the gathered changed elements."""
    monkeypatch.setattr(stream, "CHUNK_NUMEL", 40)
    pair = write_pair(tmp_path, dtype, seed=6)
    config = DiffConfig(mask_criterion=criterion)
    assert_same(
        run(pair, tmp_path, mapped=True, config=config),
        run(pair, tmp_path, mapped=False, config=config),
    )


def test_layer_fractions_equal_per_layer():
    import numpy as np
    import pandas as pd

    from engine.sparsity.tables import layer_fractions, per_layer

    table = pd.DataFrame(
        {
            "tensor": [f"t{i}" for i in range(7)],
            "layer": [0, 0, 2, 3, -1, 5, 2],
            "module": "mlp",
            "numel": [10, 30, 7, 0, 99, 4, 13],
            "changed": [1, 2, 7, 0, 5, 3, 0],
            "delta_norm": 1.0,
            "base_norm": 1.0,
        }
    )
    for n in (None, 4, 6, 8):
        want = per_layer(table, n)["fraction"].to_numpy()
        got = np.array(layer_fractions(table, n))
        np.testing.assert_array_equal(got, want)  # NaN where a layer has no weights, too
    assert layer_fractions(table[table["layer"] < 0]) == []
