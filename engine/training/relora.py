"""ReLoRA (Lialin et al. 2023, arXiv 2307.05695): high-rank training through low-rank updates.

A plain torch loop in two phases, as the paper's recipe (Guitaricet/relora):
1. Full-rank warm start (`warm_start_steps`): the target weights and the chosen full-rank
   parameters train densely with AdamW at `warm_start_lr` (linear warmup, then constant).
2. ReLoRA stages: the target nn.Linear weights are frozen and carry a trainable low-rank path,
   y = W x + s · B A x, while the full-rank parameters (`full_rank`, the paper's code: every
   other parameter) keep training. A fresh AdamW and a fresh schedule start here. Every
   `reset_every` stage steps B A is merged into W, A is re-initialized (Kaiming, as PEFT does),
   B is zeroed (so the function is unchanged), the Adam moments of A and B are pruned to their
   largest 1 % by magnitude, and the learning rate re-warms up: a jagged cosine schedule.
The run writes `model/` (the merged model, safetensors), `run.json` and
`rank_evolution.parquet` (rank of ΔW_total = W_now − W_start per module over steps, warm start
included).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.atomic import atomic_dir
from engine.errors import SubnetScopeError
from engine.jobs import JobContext
from engine.models.devices import input_device
from engine.training.config import LowRankConfig, ReLoRAConfig, target_list
from engine.training.diagnostics import loop_diagnostics
from engine.training.lora_runs import Setup, perplexity, setup, write_run
from engine.training.rank_tracking import RankTracker, subspace_tracker

MODEL = "model"
MOMENTS = ("exp_avg", "exp_avg_sq")


class LowRankLinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank path: y = base(x) + scale · (x Aᵀ) Bᵀ."""

    def __init__(
        self, base: nn.Linear, rank: int, scale: float, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.base = base
        self.scale = float(scale)
        self.generator = generator
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.a = nn.Parameter(torch.empty(rank, base.in_features, **kw))  # (r, in)
        self.b = nn.Parameter(torch.zeros(base.out_features, rank, **kw))  # (out, r)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """A as PEFT initializes it (Kaiming uniform, a=√5), B zero: the path adds nothing."""
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5), generator=self.generator)
        self.b.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.a), self.b)

    def delta(self) -> torch.Tensor:
        """The low-rank path as a dense (out, in) matrix: scale · B @ A."""
        return self.scale * (self.b @ self.a)

    def weight(self) -> torch.Tensor:
        """The weight the layer acts with now: W + scale · B @ A, (out, in)."""
        return self.base.weight + self.delta()

    @torch.no_grad()
    def merge(self) -> None:
        """W ← W + scale · B @ A, then a fresh A and a zero B."""
        self.base.weight.add_(self.delta().to(self.base.weight.dtype))
        self.reset_parameters()


def target_linears(model: nn.Module, targets: list[str] | str) -> list[tuple[str, nn.Linear]]:
    """The nn.Linear layers named by `targets` (the LM head never), by module path."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is output:
            continue
        if targets == "all-linear" or name.rsplit(".", 1)[-1] in targets:
            found.append((name, module))
    if not found:
        shown = targets if isinstance(targets, str) else ",".join(targets)
        raise SubnetScopeError(
            f"target_modules '{shown}' match no nn.Linear layer of this model (GPT-2 style "
            "Conv1D layers are not supported here; use a Llama-style model)"
        )
    return found


def attach_low_rank(
    model: nn.Module,
    targets: list[str] | str,
    rank: int,
    scale: float,
    generator: torch.Generator | None = None,
) -> dict[str, LowRankLinear]:
    """Freeze `model` and wrap its target nn.Linear layers; returns them by module path."""
    found = target_linears(model, targets)
    model.requires_grad_(False)
    layers = {}
    for name, linear in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = LowRankLinear(linear, rank, scale, generator)
        setattr(parent, child, layer)
        layers[name] = layer
    return layers


@torch.no_grad()
def detach_low_rank(model: nn.Module, layers: Mapping[str, LowRankLinear]) -> None:
    """Merge every low-rank path and put the plain nn.Linear layers back."""
    for name, layer in layers.items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base)


def low_rank_parameters(layers: Mapping[str, LowRankLinear]) -> list[nn.Parameter]:
    return [p for layer in layers.values() for p in (layer.a, layer.b)]


def full_rank_parameters(
    model: nn.Module, layers: Mapping[str, LowRankLinear], choice: str
) -> dict[str, nn.Parameter]:
    """The parameters outside the low-rank paths that train at full rank, by name.

    'all-other' is the paper's code: ReLoRaModel freezes only the wrapped weights and the
    optimizer takes every parameter that still requires grad (embeddings, norms, LM head,
    biases of wrapped layers). 'norms' takes the parameters of *Norm modules; 'norms+embeddings'
    adds the input and output embeddings (one tensor when tied)."""
    frozen = {id(layer.base.weight) for layer in layers.values()}
    frozen |= {id(p) for p in low_rank_parameters(layers)}
    chosen: set[int] = set()
    if choice == "all-other":
        chosen = {id(p) for p in model.parameters()} - frozen
    if choice in ("norms", "norms+embeddings"):
        for module in model.modules():
            if "norm" in type(module).__name__.lower():
                chosen |= {id(p) for p in module.parameters(recurse=False)}
    if choice == "norms+embeddings":
        for get in ("get_input_embeddings", "get_output_embeddings"):
            module = getattr(model, get)() if hasattr(model, get) else None
            if module is not None:
                chosen |= {id(p) for p in module.parameters()}
    named = dict(model.named_parameters())  # tied tensors appear once, under their first name
    return {n: p for n, p in named.items() if id(p) in chosen and id(p) not in frozen}


def set_phase(
    layers: Mapping[str, LowRankLinear], full_rank: Mapping[str, nn.Parameter], warm: bool
) -> list[nn.Parameter]:
    """Make the phase's parameters (and only those) require grad; returns them.

    Warm start: the target weights themselves and `full_rank`; ReLoRA: A, B and `full_rank`."""
    for layer in layers.values():
        layer.base.weight.requires_grad_(warm)
        layer.a.requires_grad_(not warm)
        layer.b.requires_grad_(not warm)
    for p in full_rank.values():
        p.requires_grad_(True)
    own = [layer.base.weight for layer in layers.values()] if warm else low_rank_parameters(layers)
    return own + list(full_rank.values())


@torch.no_grad()
def prune_optimizer_state(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], prune: float
) -> dict:
    """ReLoRA's partial optimizer reset: in each of exp_avg and exp_avg_sq of `params`, zero
    all but the round((1 − prune) · n) entries of largest magnitude; then zero exp_avg wherever
    exp_avg_sq was zeroed. Returns counts (`orphans`: first moments zeroed by that last rule).

    Pruned independently (as the paper's code does) an entry can keep m ≠ 0 with v = 0, and
    Adam's next step there is m̂ / ε ≈ 1e8 · m̂ — right after a merge A's gradient is exactly 0
    (B = 0), so nothing bounds it. On the demo model that diverged (held-out ppl 48.6 → 2.7e8)."""
    kept = total = orphans = 0
    for p in params:
        state = optimizer.state.get(p)
        if not state:
            continue
        for key in MOMENTS:
            moment = state.get(key)
            if moment is None:
                continue
            flat = moment.view(-1)
            keep = round((1.0 - prune) * flat.numel())
            mask = torch.zeros_like(flat, dtype=torch.bool)
            if keep > 0:
                mask[torch.topk(flat.abs(), keep, sorted=False).indices] = True
            flat.mul_(mask)
            kept += keep
            total += flat.numel()
        m, v = state.get("exp_avg"), state.get("exp_avg_sq")
        if m is not None and v is not None:
            orphan = (m != 0) & (v == 0)
            orphans += int(orphan.sum())
            m.masked_fill_(orphan, 0.0)
    return {
        "kept": kept,
        "total": total,
        "kept_fraction": kept / total if total else 0.0,
        "orphans": orphans,
    }


def merge_and_reset(
    layers: Mapping[str, LowRankLinear],
    optimizer: torch.optim.Optimizer | None = None,
    prune: float = 0.99,
) -> dict:
    """One ReLoRA restart: merge B @ A into W, re-init A, zero B, prune the optimizer state."""
    for layer in layers.values():
        layer.merge()
    if optimizer is None:
        return {"kept": 0, "total": 0, "kept_fraction": 0.0}
    return prune_optimizer_state(optimizer, low_rank_parameters(layers), prune)


def jagged_lr(
    step: int,
    *,
    steps: int,
    warmup: int,
    reset_every: int,
    restart_warmup: int,
    min_ratio: float,
) -> float:
    """The learning-rate multiplier of optimizer step `step` (1-based), ReLoRA's jagged cosine:
    a linear warmup over the first `warmup` steps, a cosine from 1 to `min_ratio` over the run,
    and after each reset (every `reset_every` steps) a linear re-warmup over `restart_warmup`
    steps up to the cosine's value at the end of that re-warmup."""

    def cosine(t: int) -> float:
        progress = min(1.0, max(0.0, (t - warmup) / max(1, steps - warmup)))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    if warmup > 0 and step <= warmup:
        return step / warmup
    restart = ((step - 1) // reset_every) * reset_every  # steps done at the last reset
    if restart > 0 and restart_warmup > 0 and step - restart <= restart_warmup:
        return (step - restart) / restart_warmup * cosine(restart + restart_warmup)
    return cosine(step)


def relora_lr(step: int, config: ReLoRAConfig) -> tuple[float, str]:
    """The learning rate of optimizer step `step` (1-based) and its phase.

    Warm start (steps 1 … W): warm_lr · min(1, step / warmup_steps), a full-rank run cut at W
    steps (the paper's warm start is a checkpoint of a longer full-rank run). ReLoRA (steps
    W+1 … steps): lr · jagged_lr over the stage's own steps, as the paper's code restarts its
    scheduler when it continues from the warm-start checkpoint."""
    warm = config.warm_start()
    if step <= warm:
        ramp = min(1.0, step / config.warmup_steps) if config.warmup_steps > 0 else 1.0
        return config.warm_lr() * ramp, "warm-start"
    factor = jagged_lr(
        step - warm,
        steps=config.steps - warm,
        warmup=config.warmup_steps,
        reset_every=config.reset_every,
        restart_warmup=config.restart_warmup_steps,
        min_ratio=config.min_lr_ratio,
    )
    return config.lr * factor, "relora"


def text_batches(
    texts: list[str], tokenizer, batch_size: int, max_length: int, seed: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled batches: input_ids, attention_mask (B, L) and labels (pads → -100)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(texts))
        for start in range(0, len(order), batch_size):
            chunk = [texts[i] for i in order[start : start + batch_size]]
            if len(chunk) < min(batch_size, len(texts)):
                break  # a short tail would change the loss scale; start the next epoch
            enc = tokenizer(
                chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            yield {
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "labels": labels,
            }


def train_step(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> float:
    """Forward and backward on one batch; returns the loss."""
    device = input_device(model)
    loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
    loss.backward()
    return float(loss.detach())


def accumulated(
    layers: Mapping[str, LowRankLinear], start: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """ΔW_total = W_now − W_start per module, the un-merged low-rank path included."""
    with torch.no_grad():
        return {name: layer.weight().float() - start[name] for name, layer in layers.items()}


def finish(
    config: LowRankConfig,
    ctx: JobContext,
    run: Setup,
    layers: Mapping[str, LowRankLinear],
    tracker: RankTracker,
    kind: str,
    extra: dict,
    losses: list[dict],
) -> dict:
    """Merge, score the held-out texts, save `model/`, the rank table and run.json."""

    detach_low_rank(run.model, layers)
    ctx.progress(0.88, "scoring the trained model")
    after = perplexity(run.model, run.tokenizer, run.heldout, config.max_length)
    ctx.metric("heldout_ppl", after, step=config.steps)
    out = ctx.result_dir / MODEL
    with atomic_dir(out) as tmp:
        run.model.save_pretrained(str(tmp), safe_serialization=True)
        run.tokenizer.save_pretrained(str(tmp))
    extra = {"modules": len(layers), **extra}
    return write_run(
        ctx,
        config,
        run,
        kind=kind,
        out=("output", out),
        after=after,
        losses=losses,
        tracker=tracker,
        extra=extra,
    )


def run_relora(config: ReLoRAConfig, ctx: JobContext) -> dict:
    """Train with ReLoRA; see the module docstring for what lands in the result folder."""
    run = setup(config, ctx)
    generator = torch.Generator().manual_seed(config.seed)
    scale = config.lora_alpha / config.lora_rank
    layers = attach_low_rank(
        run.model, target_list(config.target_modules), config.lora_rank, scale, generator
    )
    start = {name: layer.base.weight.detach().float().clone() for name, layer in layers.items()}
    full_rank = full_rank_parameters(run.model, layers, config.full_rank)
    warm = config.warm_start()

    def optimizer_for(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    optimizer = optimizer_for(set_phase(layers, full_rank, warm=warm > 0))
    batches = text_batches(
        run.train, run.tokenizer, config.batch_size, config.max_length, config.seed
    )
    tracker = RankTracker(ctx, subspaces=subspace_tracker(config))
    losses, lrs, resets = [], [], []
    run.model.train()
    diagnostics = loop_diagnostics(
        config, ctx, run.model, tokenizer=run.tokenizer, train=run.train, heldout=run.heldout
    )
    ctx.progress(0.08, "full-rank warm start" if warm else "training")
    for step in range(1, config.steps + 1):
        if step == warm + 1 and warm > 0:  # the first ReLoRA stage: fresh optimizer state
            optimizer = optimizer_for(set_phase(layers, full_rank, warm=False))
        lr, phase = relora_lr(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        diagnostics.before_step(step)
        loss = train_step(run.model, next(batches))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        diagnostics.after_step(step)  # before a merge: the step's own update of A, B
        losses.append({"step": step, "loss": loss})
        lrs.append({"step": step, "lr": lr, "phase": phase})
        ctx.metric("train/loss", loss, step=step)
        ctx.metric("train/learning_rate", lr, step=step)
        stage_step = step - warm
        if stage_step > 0 and stage_step % config.reset_every == 0 and step < config.steps:
            pruned = merge_and_reset(layers, optimizer, config.optimizer_reset_prune)
            resets.append({"step": step, **pruned})
            ctx.metric("relora/reset", pruned["kept_fraction"], step=step)
        if step % config.rank_every == 0 or step == config.steps or step == warm:
            tracker.record_dense(step, accumulated(layers, start))
        ctx.progress(0.08 + 0.78 * step / config.steps, f"step {step}/{config.steps} ({phase})")
    diagnostics.close()
    extra = {
        "warm_start": {"steps": warm, "lr": config.warm_lr()},
        "full_rank": {
            "choice": config.full_rank,
            "parameters": sorted(full_rank),
            "numel": sum(p.numel() for p in full_rank.values()),
        },
        "resets": resets,
        "learning_rates": lrs,
    }
    return finish(config, ctx, run, layers, tracker, "relora", extra, losses)
