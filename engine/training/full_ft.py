"""Full fine-tuning on the low-rank runs' data, steps and target modules (seed 003: "compare with
standard LoRA and full fine-tuning"): AdamW at a constant learning rate on every weight (or on
the target modules' weights only), with the target modules' accumulated update tracked like the
LoRA, ReLoRA and rank-1 runs' (effective and stable rank, subspace trajectory)."""

from __future__ import annotations

import torch

from engine.atomic import atomic_dir
from engine.jobs import JobContext
from engine.training.config import FullConfig, target_list
from engine.training.diagnostics import loop_diagnostics
from engine.training.lora_runs import perplexity, setup, write_run
from engine.training.rank_tracking import RankTracker, subspace_tracker
from engine.training.relora import MODEL, target_linears, text_batches, train_step


def run_full(config: FullConfig, ctx: JobContext) -> dict:
    """Train; writes result/model/, the rank and subspace tables and run.json."""
    run = setup(config, ctx)
    targets = dict(target_linears(run.model, target_list(config.target_modules)))
    start = {name: layer.weight.detach().float().clone() for name, layer in targets.items()}
    for parameter in run.model.parameters():
        parameter.requires_grad_(config.trainable == "all")
    for layer in targets.values():
        layer.weight.requires_grad_(True)
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    batches = text_batches(
        run.train, run.tokenizer, config.batch_size, config.max_length, config.seed
    )
    tracker = RankTracker(ctx, subspaces=subspace_tracker(config))
    losses = []
    run.model.train()
    diagnostics = loop_diagnostics(
        config, ctx, run.model, tokenizer=run.tokenizer, train=run.train, heldout=run.heldout
    )
    ctx.progress(0.08, "training")
    for step in range(1, config.steps + 1):
        diagnostics.before_step(step)
        loss = train_step(run.model, next(batches))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        diagnostics.after_step(step)
        losses.append({"step": step, "loss": loss})
        ctx.metric("train/loss", loss, step=step)
        if step % config.rank_every == 0 or step == config.steps:
            with torch.no_grad():
                deltas = {n: layer.weight.float() - start[n] for n, layer in targets.items()}
            tracker.record_dense(step, deltas)
        ctx.progress(0.08 + 0.78 * step / config.steps, f"step {step}/{config.steps}")
    diagnostics.close()
    run.model.eval()
    ctx.progress(0.88, "scoring the trained model")
    after = perplexity(run.model, run.tokenizer, run.heldout, config.max_length)
    ctx.metric("heldout_ppl", after, step=config.steps)
    out = ctx.result_dir / MODEL
    with atomic_dir(out) as tmp:
        run.model.save_pretrained(str(tmp), safe_serialization=True)
        run.tokenizer.save_pretrained(str(tmp))
    extra = {
        "modules": len(targets),
        "trainable": config.trainable,
        "trainable_numel": sum(p.numel() for p in trainable),
    }
    summary = write_run(
        ctx,
        config,
        run,
        kind="full",
        out=("output", out),
        after=after,
        losses=losses,
        tracker=tracker,
        extra=extra,
    )
    return {**summary, "trainable": config.trainable}
