"""Rank-1 merging's top singular triplet: the randomized solver against the exact SVD and
torch.svd_lowrank, on the demo model's real gradients of one batch (every attention and MLP
projection, as a gradient-svd step sees them)."""

from __future__ import annotations

import time

import torch

from benchmarks.runner import Result, benchmark, compare
from engine.data import load_texts
from engine.models import load_model
from engine.training.config import Rank1Config, target_list
from engine.training.rank1 import top_singular
from engine.training.relora import target_linears, text_batches, train_step

LOWRANK_Q, LOWRANK_ITERS = 8, 4  # torch.svd_lowrank with the same sketch size, a fixed 4 passes


def demo_gradients() -> list[torch.Tensor]:
    loaded = load_model("demo")
    model = loaded.model.float().train()
    linears = target_linears(model, target_list(Rank1Config().target_modules))
    texts = load_texts("demo-general", limit=4, seed=0)
    batch = next(text_batches(texts, loaded.tokenizer, 4, 64, 0))
    model.requires_grad_(False)
    for _, linear in linears:
        linear.weight.requires_grad_(True)
    train_step(model, batch)
    return [linear.weight.grad.detach().float().clone() for _, linear in linears]


def _timed(solve, grads: list[torch.Tensor]) -> tuple[float, list]:
    started = time.perf_counter()
    out = [solve(g) for g in grads]
    return time.perf_counter() - started, out


def _error(got: list, exact: list, grads: list[torch.Tensor]) -> float:
    """Largest relative error of σ₁u₁v₁ᵀ against the exact rank-1 part, over the modules."""
    worst = 0.0
    for (s, u, v), (se, ue, ve), g in zip(got, exact, grads, strict=True):
        diff = torch.linalg.matrix_norm(s * torch.outer(u, v) - se * torch.outer(ue, ve))
        worst = max(worst, float(diff) / max(se, 1e-30) if g.any() else 0.0)
    return worst


def _lowrank(g: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    u, s, v = torch.svd_lowrank(g, q=LOWRANK_Q, niter=LOWRANK_ITERS)
    return float(s[0]), u[:, 0], v[:, 0]


@benchmark("rank1_svd", repeats=3)
def rank1_svd(repeats: int) -> list[Result]:
    """Seconds for the top triplet of every target gradient: randomized (ours) vs exact, and
    torch.svd_lowrank beside them with its error (a fixed number of passes, no convergence test)."""
    torch.set_num_threads(1)
    grads = demo_gradients()
    runs = {"randomized": [], "exact": [], "lowrank": []}
    results = {}
    for _ in range(repeats):  # side by side in every round
        for name, solve in (
            ("randomized", lambda g: top_singular(g, "randomized")),
            ("exact", lambda g: top_singular(g, "exact")),
            ("lowrank", _lowrank),
        ):
            seconds, out = _timed(solve, grads)
            runs[name].append(seconds)
            results[name] = out
    details = {
        "modules": len(grads),
        "randomized_max_rel_error": _error(results["randomized"], results["exact"], grads),
        "svd_lowrank_max_rel_error": _error(results["lowrank"], results["exact"], grads),
        "svd_lowrank_seconds": sorted(runs["lowrank"])[len(runs["lowrank"]) // 2],
    }
    return [
        compare(
            "rank1_svd.randomized_vs_exact.seconds",
            "seconds for σ₁u₁v₁ᵀ of every target gradient, randomized solver (median)",
            runs["randomized"],
            "torch.linalg.svd (exact)",
            runs["exact"],
            details=details,
        )
    ]
