"""Dynamic rank-1 merging (seed 003): a fresh rank-1 LoRA per target module every step,
trained for one step (or `merge_every`) and merged into the weights at once.

B starts at zero (the function is unchanged) and A is random, so each merged update
s · b aᵀ has rank ≤ 1 per module while the accumulated update ΔW_total = W_now − W_start grows
in rank as the subspaces change. Writes `model/`, `run.json` and `rank_evolution.parquet`.
"""

from __future__ import annotations

import torch

from engine.jobs import JobContext
from engine.training.config import Rank1Config, target_list
from engine.training.lora_runs import setup
from engine.training.rank_tracking import RankTracker
from engine.training.relora import (
    accumulated,
    attach_low_rank,
    finish,
    low_rank_parameters,
    merge_and_reset,
    text_batches,
    train_step,
)


def run_rank1(config: Rank1Config, ctx: JobContext) -> dict:
    """Train by rank-1 merges; see the module docstring for what lands in the result folder."""
    run = setup(config, ctx)
    generator = torch.Generator().manual_seed(config.seed)
    layers = attach_low_rank(run.model, target_list(config.target_modules), 1, 1.0, generator)
    start = {name: layer.base.weight.detach().float().clone() for name, layer in layers.items()}
    params = low_rank_parameters(layers)
    batches = text_batches(run.train, run.tokenizer, config.batch_size, config.max_length,
                           config.seed)  # fmt: skip
    tracker = RankTracker(ctx)
    losses, merges = [], 0
    optimizer = torch.optim.Adam(params, lr=config.lr)
    run.model.train()
    ctx.progress(0.08, "training")
    for step in range(1, config.steps + 1):
        loss = train_step(run.model, next(batches))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append({"step": step, "loss": loss})
        ctx.metric("train/loss", loss, step=step)
        if step % config.merge_every == 0:
            merge_and_reset(layers)  # fresh A, zero B: a new rank-1 LoRA
            optimizer = torch.optim.Adam(params, lr=config.lr)  # and a fresh optimizer state
            merges += 1
        if step % config.rank_every == 0 or step == config.steps:
            tracker.record_dense(step, accumulated(layers, start))
        ctx.progress(0.08 + 0.78 * step / config.steps, f"step {step}/{config.steps}")
    return finish(config, ctx, run, layers, tracker, "rank1", {"merges": merges}, losses)
