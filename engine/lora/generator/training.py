"""Training a LoRA generator on a teachers run (DnD's data, LLGBM's losses).

One sample is one teacher checkpoint with a fresh random batch of N prompts of its task (DnD:
prompts only, drawn from the task's train split). The generator maps the prompts' embeddings to
A and B for every target module; the loss compares them with the checkpoint's own factors (weight,
ΔW) and/or compares the behaviour they cause, Δ = v(adapted) − v(base) over the run's probe texts,
with the checkpoint's cached Δ (delta). Held-out tasks never contribute a checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import SubnetScopeError
from engine.lora.generator.config import GeneratorTrainConfig
from engine.lora.generator.teachers import TeacherCheckpoint, TeacherRun, teacher_factors
from engine.models.loading import LoadedModel

GENERATOR_DIR = "generator"
META = "meta.json"


@dataclass
class TrainingData:
    """Everything a step needs, in memory: teachers' factors stacked, deltas, prompt embeddings."""

    checkpoints: list[TeacherCheckpoint]
    modules: list[str]
    a: dict[str, torch.Tensor]  # path -> (n_ckpt, r, d_in)
    b: dict[str, torch.Tensor]  # path -> (n_ckpt, d_out, r)
    deltas: torch.Tensor  # (n_ckpt, hidden) teachers' Δ
    base: torch.Tensor  # (hidden,) v(base) over the probes
    prompts: dict[str, torch.Tensor]  # task -> (n_task_prompts, cond_dim) train-prompt embeddings
    scale: float


def encode_prompts(encoder, prompts: list[str]) -> torch.Tensor:
    return torch.from_numpy(np.asarray(encoder.encode(prompts), dtype=np.float32))


def training_data(run: TeacherRun, config: GeneratorTrainConfig, encoder) -> TrainingData:
    held = set(config.held_out_tasks)
    run.check_tasks(config.held_out_tasks)
    checkpoints = [c for c in run.checkpoints if c.task not in held]
    if not checkpoints:
        raise SubnetScopeError(
            f"holding out {', '.join(sorted(held))} leaves no teacher checkpoint to train on"
        )
    checkpoints = [c for c in checkpoints if c.step >= config.from_step]
    if not checkpoints:
        last = max(c.step for c in run.checkpoints)
        raise SubnetScopeError(
            f"no checkpoint at or after step {config.from_step}: the teachers' last is step {last}"
        )
    loaded = [teacher_factors(c.path) for c in checkpoints]
    modules = list(loaded[0])
    for c, f in zip(checkpoints, loaded, strict=True):
        if list(f) != modules:
            first = checkpoints[0].id
            raise SubnetScopeError(f"checkpoint {c.id} targets other modules than {first}")
    a = {m: torch.stack([f[m][0] for f in loaded]) for m in modules}
    b = {m: torch.stack([f[m][1] for f in loaded]) for m in modules}
    deltas = torch.from_numpy(np.stack([run.delta(c.id) for c in checkpoints])).float()
    base = torch.from_numpy(np.asarray(run.base_state(), dtype=np.float32))
    tasks = sorted({c.task for c in checkpoints})
    prompts = {t: encode_prompts(encoder, list(run.tasks[t]["train_prompts"])) for t in tasks}
    return TrainingData(checkpoints, modules, a, b, deltas, base, prompts, run.alpha / run.rank)


def draw_condition(embeddings: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """N prompt embeddings drawn without replacement (with, if the task has fewer): (N, dim)."""
    count = embeddings.shape[0]
    if count >= n:
        index = torch.randperm(count, generator=gen)[:n]
    else:
        index = torch.randint(count, (n,), generator=gen)
    return embeddings[index]


def build_for(
    run: TeacherRun, data: TrainingData, config: GeneratorTrainConfig, cond_dim: int, delta_dim: int
):
    from engine.lora.generator.hypernet import GeneratorConfig, TargetSpec, build_generator

    targets = tuple(
        TargetSpec(m, int(data.b[m].shape[1]), int(data.a[m].shape[2])) for m in data.modules
    )
    gen_config = GeneratorConfig(
        arch=config.arch,
        cond_dim=cond_dim,
        rank=run.rank,
        alpha=run.alpha,
        targets=targets,
        hidden=config.hidden,
        delta_dim=delta_dim if config.loss == "delta_guided" else 0,
    )
    torch.manual_seed(config.seed)
    generator = build_generator(gen_config)
    # The output is the teachers' mean factors plus what the generator learns (hypernet.py).
    generator.set_anchor({m: (data.a[m].mean(0), data.b[m].mean(0)) for m in data.modules})
    return generator


def freeze(loaded: LoadedModel) -> None:
    """The job's own copy of the base model: no parameter needs a gradient (the factors do)."""
    for p in loaded.model.parameters():
        p.requires_grad_(False)
    loaded.model.eval()


def train_steps(
    loaded: LoadedModel,
    run: TeacherRun,
    config: GeneratorTrainConfig,
    data: TrainingData,
    generator: torch.nn.Module,
    on_step=None,
) -> list[dict[str, float]]:
    """Optimize the generator; returns one record of loss terms per step."""
    from engine.lora.generator.functional import delta_differentiable, probe_batch
    from engine.lora.generator.losses import LossWeights

    weights = LossWeights(weight=config.lambda_w, delta=config.lambda_d, kind=config.delta_kind)
    probes = None
    if config.uses_delta:
        probes = probe_batch(loaded, run.probes, max_length=run.probe_max_length)
    optimizer = torch.optim.AdamW(
        [p for p in generator.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    rng = torch.Generator().manual_seed(config.seed)
    tasks = [c.task for c in data.checkpoints]
    history = []
    generator.train()
    for step in range(1, config.steps + 1):
        index = torch.randint(len(data.checkpoints), (config.batch_size,), generator=rng)
        cond = torch.stack(
            [draw_condition(data.prompts[tasks[i]], config.n_prompts, rng) for i in index.tolist()]
        )  # (batch, N, cond_dim)
        pred = generator(cond)
        teacher = {m: (data.a[m][index], data.b[m][index]) for m in data.modules}
        kwargs: dict[str, Any] = {"pred": pred, "teacher": teacher, "scale": data.scale}
        # δ needs forward passes of the base: `delta_every` spaces them out in multitask runs
        # (weights every step) and delta-guided runs (LLGBM's cycle: the head alone in between).
        with_delta = config.loss == "delta" or (
            config.uses_delta and step % config.delta_every == 0
        )
        if with_delta:
            computed = [
                delta_differentiable(
                    loaded,
                    probes,
                    {m: (pred[m][0][k], pred[m][1][k]) for m in data.modules},
                    data.scale,
                    data.base,
                )
                for k in range(len(index))
            ]
            kwargs["delta_pred"] = torch.stack(computed)  # (batch, hidden)
            kwargs["delta_teacher"] = data.deltas[index]
            if config.loss == "delta_guided":
                kwargs["delta_head"] = generator.predict_delta(cond)
        elif config.loss == "delta_guided":
            # LLGBM's cycle: steps without a computed δ train the head (and the shared trunk).
            kwargs["delta_head"] = generator.predict_delta(cond)
            kwargs["delta_teacher"] = data.deltas[index]
        loss, terms = step_loss(config, weights, with_delta, **kwargs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        record = {"step": step, "loss": float(loss.detach()), **terms}
        history.append(record)
        if on_step is not None:
            on_step(step, record)
    generator.eval()
    return history


def step_loss(config: GeneratorTrainConfig, weights, with_delta: bool, **kwargs):
    """(loss, terms) of one step; on a step without a computed δ the δ terms drop out."""
    from engine.lora.generator.losses import combined_loss, delta_loss, delta_w_loss

    mode = config.loss
    if mode == "multitask" and config.weight_term == "delta_w":
        l_w = delta_w_loss(kwargs["pred"], kwargs["teacher"], kwargs["scale"])
        terms = {"delta_w": float(l_w.detach())}
        loss = weights.weight * l_w
        if with_delta:
            l_d = delta_loss(kwargs["delta_pred"], kwargs["delta_teacher"], weights.kind)
            terms["delta"] = float(l_d.detach())
            loss = loss + weights.delta * l_d
        return loss, terms
    if with_delta:
        return combined_loss(mode, weights, **kwargs)
    if mode == "multitask":
        loss, terms = combined_loss("weight", weights, **kwargs)
        return weights.weight * loss, terms
    return combined_loss(mode, weights, **kwargs)  # delta_guided without δ: the head alone


def open_base(run: TeacherRun, config: GeneratorTrainConfig) -> LoadedModel:
    from engine.models.loading import load_model

    loaded = load_model(run.model, dtype=config.dtype)
    freeze(loaded)
    return loaded


def write_generator(generator, folder: Path, meta: dict[str, Any], adapter_config: Path) -> Path:
    """generator.safetensors + generator.json, meta.json, and the teachers' adapter_config.json
    (what every generated adapter's PEFT config is)."""
    import json
    import shutil

    from engine.atomic import atomic_dir
    from engine.lora.generator.hypernet import save_generator

    with atomic_dir(folder) as tmp:
        save_generator(generator, tmp)
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        shutil.copyfile(adapter_config, tmp / "adapter_config.json")
    return folder


def train_and_evaluate(
    config: GeneratorTrainConfig,
    run: TeacherRun,
    loaded: LoadedModel,
    encoder,
    *,
    on_step=None,
) -> tuple[torch.nn.Module, list[dict], dict[str, Any], Any]:
    """(generator, history, summary, evaluation table) of one configuration."""
    from engine.lora.generator.evaluate import evaluate_generator

    started = time.monotonic()
    data = training_data(run, config, encoder)
    hidden = int(data.base.shape[0])
    generator = build_for(run, data, config, encoder.dim, hidden)
    history = train_steps(loaded, run, config, data, generator, on_step=on_step)
    trained = time.monotonic() - started
    table, summary = evaluate_generator(loaded, run, generator, encoder, config)
    summary |= {"train_seconds": round(trained, 2), "final_loss": history[-1]["loss"]}
    return generator, history, summary, table
