"""Dynamic rank-1 merging (seed 003): every step changes each target weight by a rank-1 update.

`gradient-svd` (the default) applies the best rank-1 approximation (Eckart–Young) of the step's
own dense update, so "gradient descent updates are inherently rank-1" holds by construction:
- sgd:  W ← W − lr · σ₁u₁v₁ᵀ, the top singular triplet of the weight's gradient G;
- adam: Adam's moments run on the dense gradient G of every target weight, exactly as full-rank
  Adam's would (2 floats per target weight of memory, plus the dense gradient); its dense step
  D = m̂ / (√v̂ + ε) is formed and W ← W − lr · σ₁u₁v₁ᵀ of D. What is approximated is Adam's
  step, not the gradient; the rest of D is dropped that step, while the moments keep all of G.
`random-projection` is the scheme a fresh rank-1 LoRA per step gives: A (1, in) random, B zero,
trained `merge_every` steps and merged. B = 0 makes ∂L/∂A = 0 on its first step, so one merged
step is the gradient projected on a random direction a: −lr · s² · G aᵀa with sgd, and
−lr · s · (g / (|g| + ε)) a with g = s · G aᵀ under a fresh Adam (a sign-quantized projection).

Writes `model/`, `run.json` and `rank_evolution.parquet`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from engine.jobs import JobContext
from engine.training.config import Rank1Config, target_list
from engine.training.diagnostics import loop_diagnostics
from engine.training.lora_runs import setup
from engine.training.rank_tracking import RankTracker, subspace_tracker
from engine.training.relora import (
    accumulated,
    attach_low_rank,
    finish,
    low_rank_parameters,
    merge_and_reset,
    target_linears,
    text_batches,
    train_step,
)

SKETCH = 8  # randomized solver: subspace size (Halko, Martinsson & Tropp 2011, alg. 4.4)
MAX_PASSES = 40  # power passes before falling back to the exact SVD
CONVERGED = 1e-6  # stop once v₁ moves less than this (2-norm) in a pass


def top_singular(
    matrix: torch.Tensor, solver: str = "exact"
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """σ₁, u₁ (out,) and v₁ (in,) of a (out, in) matrix, in float32.

    'randomized' runs subspace iteration on SKETCH vectors until v₁ stops moving (CONVERGED),
    and falls back to the exact SVD when MAX_PASSES do not get there (σ₉ close to σ₁)."""
    m = matrix.detach().float()
    if solver == "exact" or min(m.shape) <= 2 * SKETCH:
        return _exact(m)
    gen = torch.Generator(device=m.device).manual_seed(0)
    probe = torch.randn(m.shape[1], SKETCH, generator=gen, device=m.device)  # (in, k)
    q = torch.linalg.qr(m @ probe).Q  # (out, k)
    last = None
    for _ in range(MAX_PASSES):
        q = torch.linalg.qr(m @ torch.linalg.qr(m.T @ q).Q).Q  # (out, k)
        u, s, vh = torch.linalg.svd(q.T @ m, full_matrices=False)  # (k, in)
        v = vh[0] * torch.sign(vh[0][vh[0].abs().argmax()])  # a fixed sign to compare passes
        if last is not None and float(torch.linalg.vector_norm(v - last)) < CONVERGED:
            return float(s[0]), q @ u[:, 0], vh[0]
        last = v
    return _exact(m)


def _exact(m: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return float(s[0]), u[:, 0], vh[0]


class DenseAdam:
    """Adam's moments on dense gradients (torch.optim.Adam's defaults and bias correction);
    `direction` returns the step before the learning rate, m̂ / (√v̂ + ε)."""

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.betas, self.eps = betas, eps
        self.state: dict[str, tuple[int, torch.Tensor, torch.Tensor]] = {}

    def direction(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        b1, b2 = self.betas
        t, m, v = self.state.get(name, (0, torch.zeros_like(grad), torch.zeros_like(grad)))
        t, m, v = t + 1, b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad * grad
        self.state[name] = (t, m, v)
        return (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + self.eps)


class GradientSVD:
    """Each step: dense gradients of the target weights, then W ← W − lr · σ₁u₁v₁ᵀ of the step."""

    def __init__(self, model: nn.Module, targets: list[str] | str, config: Rank1Config) -> None:
        self.model, self.config = model, config
        self.linears = dict(target_linears(model, targets))
        model.requires_grad_(False)
        for linear in self.linears.values():
            linear.weight.requires_grad_(True)
        self.adam = DenseAdam() if config.optimizer == "adam" else None
        self.merges = 0
        self.captured: list[float] = []  # per step: mean over modules of σ₁² / ‖D‖²_F

    def weights(self) -> dict[str, torch.Tensor]:
        return {name: linear.weight for name, linear in self.linears.items()}

    def step(self, batch: Mapping[str, torch.Tensor]) -> float:
        loss = train_step(self.model, batch)
        captured = []
        with torch.no_grad():
            for name, linear in self.linears.items():
                if linear.weight.grad is None:  # a layer the loss does not reach: no step
                    continue
                grad = linear.weight.grad.float()  # (out, in)
                linear.weight.grad = None
                dense = self.adam.direction(name, grad) if self.adam else grad
                sigma, u, v = top_singular(dense, self.config.svd)
                linear.weight.add_(
                    (-self.config.lr * sigma * torch.outer(u, v)).to(linear.weight.dtype)
                )
                total = float(dense.square().sum())
                captured.append(sigma**2 / total if total else 0.0)
        self.merges += 1
        self.captured.append(sum(captured) / len(captured) if captured else 0.0)
        return loss

    def deltas(self, start: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {n: linear.weight.float() - start[n] for n, linear in self.linears.items()}

    def layers(self) -> dict:
        return {}  # nothing to merge or unwrap at the end


class RandomProjection:
    """A fresh rank-1 LoRA per target module (random A, zero B, scale 1), trained for
    merge_every steps with a fresh optimizer, then merged."""

    def __init__(
        self,
        model: nn.Module,
        targets: list[str] | str,
        config: Rank1Config,
        generator: torch.Generator,
    ) -> None:
        self.model, self.config = model, config
        self.wrapped = attach_low_rank(model, targets, 1, 1.0, generator)
        self.params = low_rank_parameters(self.wrapped)
        self.optimizer = self._fresh()
        self.steps = self.merges = 0
        self.captured: list[float] = []

    def _fresh(self) -> torch.optim.Optimizer:
        cls = torch.optim.Adam if self.config.optimizer == "adam" else torch.optim.SGD
        return cls(self.params, lr=self.config.lr)

    def weights(self) -> dict[str, torch.Tensor]:
        return {name: layer.base.weight for name, layer in self.wrapped.items()}

    def step(self, batch: Mapping[str, torch.Tensor]) -> float:
        loss = train_step(self.model, batch)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        if self.steps % self.config.merge_every == 0:
            merge_and_reset(self.wrapped)  # fresh A, zero B: a new rank-1 LoRA
            self.optimizer = self._fresh()  # and a fresh optimizer state
            self.merges += 1
        return loss

    def deltas(self, start: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return accumulated(self.wrapped, start)

    def layers(self) -> dict:
        return self.wrapped


def rank1_trainer(
    model: nn.Module, config: Rank1Config, generator: torch.Generator | None = None
) -> GradientSVD | RandomProjection:
    """The run's stepper for `config.method`, attached to `model`."""
    targets = target_list(config.target_modules)
    if config.method == "random-projection":
        return RandomProjection(
            model, targets, config, generator or torch.Generator().manual_seed(config.seed)
        )
    return GradientSVD(model, targets, config)


def run_rank1(config: Rank1Config, ctx: JobContext) -> dict:
    """Train by rank-1 updates; see the module docstring for what lands in the result folder."""
    run = setup(config, ctx)
    trainer = rank1_trainer(run.model, config, torch.Generator().manual_seed(config.seed))
    start = {name: w.detach().float().clone() for name, w in trainer.weights().items()}
    batches = text_batches(
        run.train, run.tokenizer, config.batch_size, config.max_length, config.seed
    )
    tracker = RankTracker(ctx, subspaces=subspace_tracker(config))
    losses = []
    run.model.train()
    # Updates are measured on the target weights: random-projection merges into frozen ones.
    diagnostics = loop_diagnostics(
        config,
        ctx,
        run.model,
        tokenizer=run.tokenizer,
        train=run.train,
        heldout=run.heldout,
        tracked=trainer.weights,
    )
    ctx.progress(0.08, "training")
    for step in range(1, config.steps + 1):
        diagnostics.before_step(step)
        loss = trainer.step(next(batches))
        diagnostics.after_step(step)
        losses.append({"step": step, "loss": loss})
        ctx.metric("train/loss", loss, step=step)
        if trainer.captured:
            ctx.metric("rank1/captured", trainer.captured[-1], step=step)
        if step % config.rank_every == 0 or step == config.steps:
            tracker.record_dense(step, trainer.deltas(start))
        ctx.progress(0.08 + 0.78 * step / config.steps, f"step {step}/{config.steps}")
    diagnostics.close()
    extra = {
        "modules": len(start),
        "merges": trainer.merges,
        "method": config.method,
        "optimizer": config.optimizer,
    }
    if trainer.captured:
        extra["captured"] = [{"step": i + 1, "fraction": c} for i, c in enumerate(trainer.captured)]
    return finish(config, ctx, run, trainer.layers(), tracker, "rank1", extra, losses)
