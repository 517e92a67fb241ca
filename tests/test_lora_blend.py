"""Blends: every PEFT combination type equals PEFT on a real PeftModel where PEFT is right; our
low-rank svd equals dense SVD truncation; errors are measured; PEFT's rslora bug shows; save."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.lora.adapters import load_adapter_set
from engine.lora.blend import METHODS, BlendSpec, blend, exact_factors, save_blend
from tests.lora_support import make_adapter, make_adapters, peft_delta, peft_model_with
from tests.tiny import tiny_model

WEIGHTS = (0.6, -0.35, 0.25)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return make_adapters(tmp_path_factory.mktemp("blend"), 3)


@pytest.fixture(scope="module")
def adapters(paths):
    return load_adapter_set(paths)


@pytest.fixture(scope="module")
def rslora_paths(tmp_path_factory):
    return make_adapters(tmp_path_factory.mktemp("rslora"), 3, rslora=True)


def peft_blend(paths, spec: BlendSpec) -> dict[str, torch.Tensor]:
    """PEFT's own add_weighted_adapter on a tiny llama with the adapters: ΔW per module."""
    model = peft_model_with(paths)
    names = [f"a{i}" for i in range(len(paths))]
    torch.manual_seed(spec.seed)
    model.add_weighted_adapter(
        names,
        list(spec.weights),
        "blend",
        combination_type=spec.method,
        svd_rank=spec.rank,
        density=spec.density,
        majority_sign_method=spec.majority_sign_method,
    )
    modules = load_adapter_set(paths).modules
    return {m: peft_delta(model, m, "blend") for m in modules}


def dense_exact(adapters, weights) -> dict[str, torch.Tensor]:
    return {m: f.dense().double() for m, f in exact_factors(adapters, weights).items()}


def rel(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(x.double() - y.double()) / torch.linalg.matrix_norm(y))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_equals_peft(paths, adapters, method) -> None:
    spec = BlendSpec(WEIGHTS, method, density=0.6, majority_sign_method="frequency", seed=3)
    expected = peft_blend(paths, spec)
    for engine in ("peft", "auto"):
        result = blend(adapters, BlendSpec(**{**spec.__dict__, "engine": engine}))
        assert result.engine == (
            "lowrank" if engine == "auto" and method in ("svd", "cat") else "peft"
        )
        for module, delta in expected.items():
            assert rel(result.factors[module].dense(), delta) < 1e-5, (engine, module)
        exact = dense_exact(adapters, WEIGHTS)
        for module, target in exact.items():
            assert result.errors[module] == pytest.approx(
                rel(result.factors[module].dense(), target), rel=1e-4, abs=1e-6
            )
        assert not result.notes


def test_lowrank_svd_equals_dense_truncation_with_negative_weights(tmp_path) -> None:
    folders = [
        make_adapter(tmp_path / "r4", 0, r=4),
        make_adapter(tmp_path / "r8", 1, r=8),
        make_adapter(tmp_path / "r2", 2, r=2),
    ]
    adapters = load_adapter_set(folders)
    weights = (0.8, -1.3, -0.4)
    k = 5
    result = blend(adapters, BlendSpec(weights, "svd", rank=k))
    assert result.engine == "lowrank" and result.rank == k
    for module, target in dense_exact(adapters, weights).items():
        u, s, vh = torch.linalg.svd(target)
        best = (u[:, :k] * s[:k]) @ vh[:k]
        got = result.factors[module].dense().double()
        assert rel(got, best) <= 1e-4
        s_got = torch.linalg.svdvals(got)[:k]
        assert float((s_got - s[:k]).abs().max() / s[0]) <= 1e-4
        # The same column and row subspaces: projectors agree.
        u_got, _, vh_got = torch.linalg.svd(got)
        p, q = u[:, :k] @ u[:, :k].T, u_got[:, :k] @ u_got[:, :k].T
        assert float(torch.linalg.matrix_norm(p - q)) <= 1e-4
        p, q = vh[:k].T @ vh[:k], vh_got[:k].T @ vh_got[:k]
        assert float(torch.linalg.matrix_norm(p - q)) <= 1e-4
        dropped = math.sqrt(float((s[k:] ** 2).sum())) / float(s.norm())
        assert result.truncation[module] == pytest.approx(dropped, rel=1e-6)
        assert result.errors[module] == pytest.approx(dropped, rel=1e-5)


def test_cat_equals_exact_weighted_sum(adapters) -> None:
    result = blend(adapters, BlendSpec(WEIGHTS, "cat"))
    assert result.rank == 12 and result.error < 1e-6 and result.truncation_total == 0
    for module, target in dense_exact(adapters, WEIGHTS).items():
        assert rel(result.factors[module].dense(), target) < 1e-6


def test_totals_combine_modules(adapters) -> None:
    result = blend(adapters, BlendSpec(WEIGHTS, "linear"))
    exact = dense_exact(adapters, WEIGHTS)
    diff = sum(
        float(torch.linalg.matrix_norm(result.factors[m].dense().double() - t)) ** 2
        for m, t in exact.items()
    )
    total = sum(float(torch.linalg.matrix_norm(t)) ** 2 for t in exact.values())
    assert result.error == pytest.approx(math.sqrt(diff / total), rel=1e-5)
    assert 0 < result.truncation_total < result.error


def test_peft_svd_scales_once(paths, adapters) -> None:
    """PEFT #3111 (scaling applied twice in svd): not in the installed PEFT for plain LoRA."""
    result = blend(adapters, BlendSpec(WEIGHTS, "svd", engine="peft"))
    assert result.error == pytest.approx(result.truncation_total, rel=1e-4)


@pytest.mark.parametrize("method", ["cat", "svd", "linear", "ties"])
def test_rslora_peft_overscales_ours_is_right(rslora_paths, method) -> None:
    """PEFT #3761: the blend copies use_rslora, so PEFT's result is √r_new too large."""
    adapters = load_adapter_set(rslora_paths)
    # linear/ties keep cross terms by design; with one nonzero weight, linear is exact.
    weights = WEIGHTS if method in ("cat", "svd") else (0.7, 0.0, 0.0)
    spec = BlendSpec(weights, method, density=1.0)
    theirs = blend(adapters, BlendSpec(**{**spec.__dict__, "engine": "peft"}))
    ours = blend(adapters, spec)
    # engine="peft" is honest: it is what PEFT itself gives on the real model.
    expected = peft_blend(rslora_paths, spec)
    for module, delta in expected.items():
        assert rel(theirs.factors[module].dense(), delta) < 1e-5
    scale = math.sqrt(theirs.rank)
    assert theirs.error > 0.5 and theirs.notes
    if method != "ties":  # ties' disjoint mean is not the weighted sum even for one adapter
        assert ours.error == pytest.approx(ours.truncation_total, abs=1e-5)
    # PEFT's factors are right, its scaling is not: dividing it out gives ours.
    for module, f in theirs.factors.items():
        assert f.scale == pytest.approx(scale)
        assert rel(f.dense() / scale, ours.factors[module].dense()) < 1e-5


def test_linear_negative_weights(adapters) -> None:
    """One adapter at −0.7: the sign goes on A only, so ΔW = −0.7·s·BA exactly (PEFT #2918)."""
    for engine in ("peft", "auto"):
        alone = blend(adapters, BlendSpec((-0.7, 0.0, 0.0), "linear", engine=engine))
        assert alone.error < 1e-6
    # Two adapters: linear mixes the factors, (Σ √|wᵢsᵢ| Bᵢ)(Σ sign(wᵢ) √|wᵢsᵢ| Aᵢ), and the
    # cross terms Bᵢ Aⱼ are its error against the exact sum (PEFT #3004), reported honestly.
    two = blend(adapters, BlendSpec((1.0, -1.0, 0.0), "linear"))
    module = adapters.modules[0]
    f0, f1 = (a.factors[module] for a in adapters.adapters[:2])
    c0, c1 = math.sqrt(f0.scale), math.sqrt(f1.scale)
    expected = (c0 * f0.b + c1 * f1.b) @ (c0 * f0.a - c1 * f1.a)
    assert rel(two.factors[module].dense(), expected) < 1e-5
    assert two.error > 0.3


def test_dare_is_reproducible(adapters) -> None:
    spec = BlendSpec(WEIGHTS, "dare_ties", density=0.5, seed=7)
    first, again = blend(adapters, spec), blend(adapters, spec)
    other = blend(adapters, BlendSpec(**{**spec.__dict__, "seed": 8}))
    module = adapters.modules[0]
    assert torch.equal(first.factors[module].a, again.factors[module].a)
    assert not torch.equal(first.factors[module].a, other.factors[module].a)


def test_single_adapter(tmp_path) -> None:
    adapters = load_adapter_set([make_adapter(tmp_path / "one", 0)])
    for method in ("svd", "cat", "linear"):
        assert blend(adapters, BlendSpec((0.5,), method)).error < 1e-5


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (BlendSpec((1.0, 1.0), "svd"), "2 weights for 3 adapters"),
        (BlendSpec(WEIGHTS, "mean"), "Unknown blend method"),
        (BlendSpec(WEIGHTS, "ties"), "needs a density"),
        (BlendSpec(WEIGHTS, "ties", density=1.5), "density must be in"),
        (BlendSpec(WEIGHTS, "svd", rank=0), "at least 1"),
        (BlendSpec((1.0, math.nan, 1.0), "svd"), "must be finite"),
        (BlendSpec(WEIGHTS, "svd", engine="fast"), "Unknown blend engine"),
        (BlendSpec(WEIGHTS, "ties", density=0.5, majority_sign_method="x"), "majority_sign"),
    ],
)
def test_bad_specs(adapters, spec, words) -> None:
    with pytest.raises(SubnetScopeError, match=words):
        blend(adapters, spec)


def test_linear_needs_equal_ranks(tmp_path) -> None:
    adapters = load_adapter_set(
        [make_adapter(tmp_path / "r4", 0, r=4), make_adapter(tmp_path / "r8", 1, r=8)]
    )
    with pytest.raises(SubnetScopeError, match="same r"):
        blend(adapters, BlendSpec((0.5, 0.5), "linear"))
    assert blend(adapters, BlendSpec((0.5, 0.5), "cat")).rank == 12


def _merged_delta(folder, module: str) -> torch.Tensor:
    from peft import PeftModel

    base = tiny_model("llama").model
    before = base.get_submodule(module).weight.detach().clone()
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    return merged.get_submodule(module).weight.detach() - before


@pytest.mark.parametrize("engine", ["auto", "peft"])
def test_save_round_trip_through_peft(rslora_paths, tmp_path, engine) -> None:
    adapters = load_adapter_set(rslora_paths)  # engine="peft": a blend scale ≠ 1 is folded in
    result = blend(adapters, BlendSpec(WEIGHTS, "svd", rank=3, engine=engine))
    out = save_blend(result, adapters, tmp_path / "saved")
    assert {p.name for p in out.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "blend.json",
    }
    for module in adapters.modules:
        torch.testing.assert_close(
            _merged_delta(out, module), result.factors[module].dense(), rtol=1e-4, atol=1e-6
        )
    reloaded = load_adapter_set([out])
    assert reloaded.adapters[0].info.scaling == 1 and reloaded.adapters[0].info.rank == 3
    save_blend(result, adapters, out)  # overwriting its own folder is fine
    (out / "other.txt").write_text("x")
    with pytest.raises(SubnetScopeError, match="holds other files"):
        save_blend(result, adapters, out)
