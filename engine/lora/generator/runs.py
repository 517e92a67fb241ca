"""The generator's jobs: train (then score), the ablation table, and a fresh evaluation."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pandas as pd

from engine.errors import SubnetScopeError
from engine.jobs import JobContext
from engine.lora.generator.config import ABLATION_CONFIGS, GeneratorTrainConfig
from engine.lora.generator.training import GENERATOR_DIR

EVALUATION = "evaluation.parquet"
HISTORY = "history.parquet"
ABLATION = "ablation.parquet"
SUMMARY = "generator.json"


def encoder_choice(name: str) -> str:
    """'auto' as what it picks here: minilm where the wheel is installed, else base."""
    if name != "auto":
        return name
    from engine.lora.generator.encoder import minilm_folder

    return "minilm" if minilm_folder() is not None else "base"


def _setup(config: GeneratorTrainConfig, ctx: JobContext):
    from engine.lora.generator.encoder import open_encoder
    from engine.lora.generator.teachers import open_teachers
    from engine.lora.generator.training import open_base

    ctx.progress(0.01, "reading the teachers")
    if config.teachers == "demo":
        wait_for_demo_teachers(ctx)
    run = open_teachers(config.teachers)
    run.check_tasks(config.held_out_tasks)
    ctx.progress(0.02, f"loading {run.model}")
    loaded = open_base(run, config)
    choice = encoder_choice(config.encoder)
    ctx.progress(0.04, f"loading the prompt encoder ({choice})")
    encoder = open_encoder(choice, loaded)
    return run, loaded, encoder, choice


def wait_for_demo_teachers(ctx: JobContext, poll_s: float = 5.0) -> None:
    """`demo build` submits the teachers and the generators together: a generator whose demo
    teachers are running waits for them (cancellable). It never waits for queued teachers: it
    would hold the queue slot they need."""
    from engine.jobs import list_jobs
    from engine.lora.generator.config import DEMO_TEACHERS, TEACHERS_KIND
    from engine.lora.generator.teachers import demo_teachers_job

    while demo_teachers_job() is None:
        active = [
            v
            for v in list_jobs(kind=TEACHERS_KIND, states=("queued", "running"), limit=50)
            if all(v.spec.params.get(k) == val for k, val in DEMO_TEACHERS.items())
        ]
        running = [v for v in active if v.status.state == "running"]
        if not running:
            if active:
                raise SubnetScopeError(
                    f"the demo's teachers (job {active[0].id}) are still queued: build this "
                    "part again once they have finished (`python -m engine demo build`)"
                )
            return  # open_teachers says what is missing
        ctx.progress(0.01, f"waiting for the demo's teachers (job {running[0].id})")
        ctx.check_cancel()
        time.sleep(poll_s)


def _reporter(ctx: JobContext, steps: int, start: float, span: float, label: str = ""):
    def on_step(step: int, record: dict[str, float]) -> None:
        ctx.check_cancel()
        for name, value in record.items():
            if name != "step":
                ctx.metric(f"{label}{name}", value, step=step)
        if step == steps or step % max(1, steps // 50) == 0:
            message = f"{label}step {step}/{steps}: loss {record['loss']:.4g}"
            ctx.progress(start + span * step / steps, message)

    return on_step


def run_training(config: GeneratorTrainConfig, ctx: JobContext) -> dict:
    from engine.lora.generator.training import train_and_evaluate, write_generator

    started = time.monotonic()
    run, loaded, encoder, choice = _setup(config, ctx)
    generator, history, summary, table = train_and_evaluate(
        config, run, loaded, encoder, on_step=_reporter(ctx, config.steps, 0.05, 0.75)
    )
    ctx.progress(0.95, "saving the generator")
    held = set(config.held_out_tasks)
    meta = {
        "model": run.model,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "teachers": str(run.folder),
        "teachers_job": run.job_id,
        "encoder": choice,
        "cond_dim": int(encoder.dim),
        "rank": run.rank,
        "alpha": run.alpha,
        "held_out": sorted(held),
        "train_tasks": sorted(t for t in run.tasks if t not in held),
        "loss": config.loss,
        "arch": config.arch,
        "parameters": int(sum(p.numel() for p in generator.parameters())),
        "config": config.to_params(),
    }
    folder = ctx.result_dir / GENERATOR_DIR
    write_generator(generator, folder, meta, run.checkpoints[0].path / "adapter_config.json")
    ctx.write_table(EVALUATION, table)
    ctx.write_table(HISTORY, pd.DataFrame(history))
    result = {
        **{k: meta[k] for k in ("model", "teachers", "encoder", "held_out", "loss", "arch")},
        "parameters": meta["parameters"],
        "evaluation": summary,
        "seconds": round(time.monotonic() - started, 2),
        "dtype": meta["dtype"],
    }
    ctx.write_json(SUMMARY, result)
    held_rec = summary.get("held_out", {}).get("generated", {}).get("recovery")
    note = f"held-out recovery {held_rec:.2f}" if held_rec is not None else "trained"
    ctx.progress(1.0, note)
    return result


def ablation_configs(params: dict[str, Any]) -> tuple[GeneratorTrainConfig, list[str], int]:

    params = dict(params)
    names = [n.strip() for n in str(params.pop("configs", "")).split(",") if n.strip()]
    trials = int(params.pop("trials", 3))
    unknown = [n for n in names if n not in ABLATION_CONFIGS]
    if unknown or not names:
        raise SubnetScopeError(
            f"configs must name some of {', '.join(ABLATION_CONFIGS)}"
            + (f", not {', '.join(unknown)}" if unknown else "")
        )
    if trials < 1:
        raise SubnetScopeError(f"trials must be ≥ 1, not {trials}")
    base = GeneratorTrainConfig.from_params(params, what="lora.generator_ablation params")
    return base, names, trials


def run_ablation(params: dict[str, Any], ctx: JobContext) -> dict:
    """seed 004's ablation: `trials` seeds × configurations, one row each, on one split."""
    from engine.lora.generator.training import train_and_evaluate

    started = time.monotonic()
    base, names, trials = ablation_configs(params)
    run, loaded, encoder, choice = _setup(base, ctx)
    rows = []
    total = len(names) * trials
    for n, (name, trial) in enumerate((c, t) for c in names for t in range(trials)):
        config = dataclasses.replace(base, **ABLATION_CONFIGS[name], seed=base.seed + trial)
        span = 0.9 / total
        reporter = _reporter(ctx, config.steps, 0.05 + span * n, span, f"{name}/{trial} ")
        _, history, summary, _ = train_and_evaluate(config, run, loaded, encoder, on_step=reporter)
        for split in ("held_out", "seen"):
            part = summary.get(split)
            if not part:
                continue
            rows.append(
                {
                    "config": name,
                    "trial": trial,
                    "split": split,
                    "recovery": part["generated"]["recovery"],
                    "loss": part["generated"]["loss"],
                    "delta_cos": part["generated"]["delta_cos"],
                    "base_loss": part["base"]["loss"],
                    "teacher_loss": part["teacher"]["loss"],
                    "final_train_loss": history[-1]["loss"],
                    "train_seconds": summary["train_seconds"],
                }
            )
    table = pd.DataFrame(rows)
    ctx.write_table(ABLATION, table)
    means = (
        table.groupby(["split", "config"], sort=False)[["recovery", "delta_cos"]]
        .agg(["mean", "std"])
        .round(4)
    )
    by_config = {
        f"{split}/{config}": {f"{c}_{s}": float(v) for (c, s), v in row.items()}
        for (split, config), row in means.iterrows()
    }
    result = {
        "configs": names,
        "trials": trials,
        "encoder": choice,
        "held_out": list(base.held_out_tasks),
        "steps": base.steps,
        "by_config": by_config,
        "seconds": round(time.monotonic() - started, 2),
    }
    ctx.write_json("ablation.json", result)
    ctx.progress(1.0, f"{total} generators trained and scored")
    return result


def run_evaluation(params: dict[str, Any], ctx: JobContext) -> dict:
    """Score a trained generator again (other draws, prompt counts or seeds)."""
    from engine.lora.generator.encoder import open_encoder
    from engine.lora.generator.evaluate import evaluate_generator
    from engine.lora.generator.generate import open_generator
    from engine.lora.generator.teachers import open_teachers
    from engine.lora.generator.training import open_base

    params = dict(params)
    spec = str(params.pop("generator", "demo"))
    gen_run = open_generator(spec)
    config = GeneratorTrainConfig.from_params(
        {**gen_run.meta["config"], **params}, what="lora.generator_eval params"
    )
    run = open_teachers(gen_run.meta["teachers"])
    loaded = open_base(run, config)
    encoder = open_encoder(gen_run.meta["encoder"], loaded)
    ctx.progress(0.1, "scoring")
    table, summary = evaluate_generator(loaded, run, gen_run.generator, encoder, config)
    ctx.write_table(EVALUATION, table)
    result = {"generator": str(gen_run.folder), "evaluation": summary}
    ctx.write_json(SUMMARY, result)
    ctx.progress(1.0, "scored")
    return result
