"""Train one GPT-2 size on one random dataset until its memorized bits stop rising, then measure.

The paper trains every model for a fixed 10⁶ steps at batch 2048 (arXiv 2505.24832 §3.2); a CPU
cannot, so a run stops at a plateau instead: the training set's memorized bits are measured every
`eval_every` steps; when the best of them rose by less than `tol` (relative) over `patience`
measurements, Adam's learning rate drops (× LR_DROP) up to `lr_drops` times, and the run stops
at the next plateau (`converged`) or at `max_steps` (not converged).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from engine.capacity.meter import Memorized, memorized_bits, model_logits, random_sequences
from engine.capacity.model import build_model, counted_parameters

LR_DROP = 0.3  # the learning rate's factor at each plateau before the last


@dataclass(frozen=True)
class TrainOptions:
    """How one run trains: the meter's config passes its fields through."""

    length: int  # S
    vocab: int  # V
    steps: int  # max_steps
    eval_every: int
    patience: int
    tol: float
    lr: float
    lr_drops: int
    batch: int


def _dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


def train_run(
    layers: int,
    width: int,
    n: int,
    precision: str,
    seed: int,
    options: TrainOptions,
    on_eval: Callable[[int, Memorized], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """One row of runs.parquet: the size, N, precision, seed, the measured bits of the best
    measured checkpoint, the steps taken and whether the plateau rule stopped the run.

    precision `fp32`: weights, activations and Adam's moments in float32. `bf16`: the model is
    stored in bfloat16 and trains so (weights, activations, Adam's moments; no float32 master
    copy, no autocast); the loss takes the logits in float32, the measurement in float64. The
    measured model is the model that trained, in its own precision."""
    started = time.perf_counter()
    data = random_sequences(n, options.length, options.vocab, seed)  # (N, S)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(layers, width, options.vocab + 1, options.length)
    model = model.to(_dtype(precision))
    params = counted_parameters(model)
    logits_of = model_logits(model, options.vocab)
    lr = options.lr
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed + 1)
    batch = min(options.batch, n)
    best: Memorized | None = None
    best_step, stale, drops, step, converged = 0, 0, 0, 0, False
    queue = torch.empty(0, dtype=torch.long)
    while step < options.steps:
        if len(queue) < batch:  # a fresh permutation per epoch
            queue = torch.cat([queue, torch.randperm(n, generator=order)])
        rows, queue = queue[:batch], queue[batch:]
        chunk = data[rows]  # (batch, S)
        model.train()
        logits = logits_of(chunk).float()  # (batch, S, V)
        loss = F.cross_entropy(logits.reshape(-1, options.vocab), chunk.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % options.eval_every and step != options.steps:
            continue
        model.eval()
        with torch.inference_mode():
            measured = memorized_bits(logits_of, data, options.vocab)
        if on_eval is not None:
            on_eval(step, measured)
        gain = measured.memorized_bits - (best.memorized_bits if best else float("-inf"))
        if best is None or measured.memorized_bits > best.memorized_bits:
            best, best_step = measured, step
        threshold = options.tol * max(abs(best.memorized_bits), 1.0)
        stale = 0 if gain > threshold else stale + 1
        if stale >= options.patience:
            if drops >= options.lr_drops:
                converged = True
                break
            drops, stale, lr = drops + 1, 0, lr * LR_DROP
            for group in optimizer.param_groups:
                group["lr"] = lr
        if should_stop is not None and should_stop():
            break
    assert best is not None  # the last step always measures
    return {
        "layers": layers,
        "width": width,
        "params": params,
        "n": n,
        "precision": precision,
        "seed": seed,
        **best.as_row(),
        "best_step": best_step,
        "steps": step,
        "converged": converged,
        "seconds": time.perf_counter() - started,
    }
