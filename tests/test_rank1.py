"""Rank-1 merging against dense computations on a tiny model: gradient-svd applies the top
singular triplet of the step's gradient (sgd) or of torch's own Adam step (adam); the randomized
solver agrees with the exact one; random-projection is the projected gradient it claims to be."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.training.config import Rank1Config
from engine.training.rank1 import GradientSVD, RandomProjection, rank1_trainer, top_singular
from engine.training.relora import text_batches
from tests.tiny import char_tokenizer, tiny_model

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _model():
    model = copy.deepcopy(tiny_model("llama").model).float().train().requires_grad_(True)
    for module in model.modules():  # no dropout: the reference must see the same function
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _batches(n: int) -> list[dict]:
    texts = [
        "the quick brown fox jumps",
        "def f(x):\n    return x + 1",
        "2 + 3 = 5",
        "hello",
        "a rank-1 step",
        "once more, with feeling",
    ]
    stream = text_batches(texts, char_tokenizer(), 3, 32, seed=0)
    return [next(stream) for _ in range(n)]


def _targets(model) -> dict[str, torch.nn.Linear]:
    return {n: m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in TARGETS}


def _reference_gradients(model, batch) -> dict[str, torch.Tensor]:
    """Dense ∂L/∂W of every target weight, by plain autograd on an independent copy."""
    weights = {n: m.weight for n, m in _targets(model).items()}
    loss = model(**batch).loss
    grads = torch.autograd.grad(loss, list(weights.values()))
    return {n: g.double() for n, g in zip(weights, grads, strict=True)}


def _rank1(matrix: torch.Tensor) -> torch.Tensor:
    """The best rank-1 approximation in float64: σ₁ u₁ v₁ᵀ."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return s[0] * torch.outer(u[:, 0], vh[0])


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().double().clone() for n, m in _targets(model).items()}


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to 1e-4 of the update's largest entry, plus the float32 rounding of W (|W| < 0.2,
    so W_after − W_before carries up to ~1e-8 of it)."""
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(actual, expected, atol=1e-4 * scale + 1e-8, rtol=0)


@pytest.mark.parametrize("svd", ["exact", "randomized"])
def test_sgd_step_is_the_top_singular_triplet_of_the_gradient(svd):
    lr = 0.05
    model, reference = _model(), _model()
    config = Rank1Config(optimizer="sgd", lr=lr, svd=svd)
    trainer = GradientSVD(model, list(TARGETS), config)
    total = {n: torch.zeros_like(w) for n, w in _snapshot(model).items()}
    for step, batch in enumerate(_batches(3), start=1):
        before = _snapshot(model)
        grads = _reference_gradients(reference, batch)
        trainer.step(batch)
        after = _snapshot(model)
        for name, grad in grads.items():
            expected = -lr * _rank1(grad)
            update = after[name] - before[name]
            _close(update, expected)
            assert int(torch.linalg.matrix_rank(update, rtol=1e-4)) == 1
            total[name] += update
            with torch.no_grad():  # the reference walks the same path
                _targets(reference)[name].weight.add_(expected.float())
        ranks = [int(torch.linalg.matrix_rank(t, rtol=1e-4)) for t in total.values()]
        assert ranks == [step] * len(ranks)  # the accumulated update grows one rank a step


def test_adam_step_is_the_rank1_truncation_of_torch_adams_step():
    lr = 1e-3
    model, reference = _model(), _model()
    trainer = GradientSVD(model, list(TARGETS), Rank1Config(optimizer="adam", lr=lr, svd="exact"))
    # torch.optim.Adam on shadow tensors gives Adam's dense step (lr 1, no weight decay: the step
    # does not depend on the tensor's value); its moments carry the full gradients.
    shadows = {
        n: torch.nn.Parameter(torch.zeros_like(m.weight, dtype=torch.float64))
        for n, m in _targets(reference).items()
    }
    adam = torch.optim.Adam(list(shadows.values()), lr=1.0)
    for batch in _batches(3):
        before = _snapshot(model)
        grads = _reference_gradients(reference, batch)
        was = {n: p.detach().clone() for n, p in shadows.items()}
        for name, p in shadows.items():
            p.grad = grads[name]
        adam.step()
        trainer.step(batch)
        after = _snapshot(model)
        for name, p in shadows.items():
            dense = was[name] - p.detach()  # Adam's dense step m̂ / (√v̂ + ε)
            expected = -lr * _rank1(dense)
            _close(after[name] - before[name], expected)
            with torch.no_grad():
                _targets(reference)[name].weight.add_(expected.float())


def test_randomized_solver_agrees_with_the_exact_svd():
    gen = torch.Generator().manual_seed(0)
    decay = torch.tensor([0.97**i for i in range(192)])  # a slowly decaying spectrum
    u, _ = torch.linalg.qr(torch.randn(576, 192, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(192, 192, generator=gen))
    matrices = [(u * decay) @ v.T, torch.randn(96, 300, generator=gen)]
    for matrix in matrices:
        exact = top_singular(matrix, "exact")
        fast = top_singular(matrix, "randomized")
        assert fast[0] == pytest.approx(exact[0], rel=1e-5)
        _close(fast[0] * torch.outer(fast[1], fast[2]), exact[0] * torch.outer(exact[1], exact[2]))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_random_projection_is_a_projected_gradient(optimizer):
    lr = 0.05
    model, reference = _model(), _model()
    config = Rank1Config(method="random-projection", optimizer=optimizer, lr=lr)
    trainer = rank1_trainer(model, config, torch.Generator().manual_seed(3))
    assert isinstance(trainer, RandomProjection)
    [batch] = _batches(1)
    a = {n: layer.a.detach().double().clone() for n, layer in trainer.wrapped.items()}  # (1, in)
    before = {n: w.detach().double().clone() for n, w in trainer.weights().items()}
    grads = _reference_gradients(reference, batch)
    trainer.step(batch)  # merge_every 1: the step is merged at once
    for name, grad in grads.items():
        update = trainer.weights()[name].detach().double() - before[name]
        g = grad @ a[name].T  # (out, 1): ∂L/∂B with B = 0, scale 1
        if optimizer == "sgd":
            expected = -lr * g @ a[name]  # −lr · G aᵀa: the gradient on a random direction
        else:
            expected = -lr * (g / (g.abs() + 1e-8)) @ a[name]  # a fresh Adam: ≈ sign(G aᵀ) a
        _close(update, expected)
    assert trainer.merges == 1


def test_gradient_svd_run_records_what_it_applied(ctx, tiny_folder):
    from engine.training.rank1 import run_rank1

    params = {
        "model": tiny_folder(),
        "steps": 3,
        "batch_size": 2,
        "max_length": 32,
        "eval_texts": 2,
        "limit": 24,
        "lr": 1e-2,
        "rank_every": 1,
        "optimizer": "sgd",
    }
    run_rank1(Rank1Config.from_params(params), ctx)
    run = json.loads((ctx.result_dir / "run.json").read_text())
    assert (run["method"], run["optimizer"], run["merges"]) == ("gradient-svd", "sgd", 3)
    assert [c["step"] for c in run["captured"]] == [1, 2, 3]
    assert all(0 < c["fraction"] <= 1 for c in run["captured"])
    assert run["config"]["method"] == "gradient-svd" and run["modules"] == 14


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"merge_every": 2}, "applies to method random-projection only"),
        ({"method": "lora"}, "method must be one of gradient-svd, random-projection"),
        ({"optimizer": "lion"}, "optimizer must be one of adam, sgd"),
        ({"svd": "lanczos"}, "svd must be one of randomized, exact"),
    ],
)
def test_rank1_option_errors(params, message):
    with pytest.raises(SubnetScopeError, match=message):
        Rank1Config.from_params(params)
    Rank1Config.from_params({"method": "random-projection", "merge_every": 2})  # meaningful there
