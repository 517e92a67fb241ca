"""Job kinds `lora.generator_train`, `lora.generator_ablation` and `lora.generator_eval`."""

from __future__ import annotations

from typing import Any

from engine.jobs import JobContext, job
from engine.lora.generator.config import ABLATION_CONFIGS, GENERATOR_KIND, GeneratorTrainConfig

ABLATION_KIND = "lora.generator_ablation"
EVAL_KIND = "lora.generator_eval"
ABLATION_DEFAULTS: dict[str, Any] = {
    **GeneratorTrainConfig().to_params(),
    "configs": ",".join(ABLATION_CONFIGS),
    "trials": 3,
    "steps": 100,
}


@job(
    GENERATOR_KIND,
    title="LoRA generator (seed 004): prompts → adapter, trained on teacher checkpoints",
    result_page="lora",
    defaults=GeneratorTrainConfig().to_params(),
    mem_gb=2.5,
)
def generator_train(params: dict[str, Any], ctx: JobContext) -> dict:
    """Train a generator on a teachers run, then score it on held-out tasks and unseen prompts."""
    from engine.lora.generator.runs import run_training

    config = GeneratorTrainConfig.from_params(params, what=f"{GENERATOR_KIND} params")
    return run_training(config, ctx)


@job(
    ABLATION_KIND,
    title="LoRA generator ablation: trials × loss configurations, one table",
    result_page="lora",
    defaults=ABLATION_DEFAULTS,
    mem_gb=2.5,
)
def generator_ablation(params: dict[str, Any], ctx: JobContext) -> dict:
    """Train and score one generator per (configuration, trial) on the same split."""
    from engine.lora.generator.runs import run_ablation

    return run_ablation(params, ctx)


@job(
    EVAL_KIND,
    title="LoRA generator evaluation: held-out loss and delta distance vs base and teacher",
    result_page="lora",
    defaults={"generator": "demo", "eval_draws": 3, "n_prompts": 8, "seed": 0},
    mem_gb=2.0,
)
def generator_eval(params: dict[str, Any], ctx: JobContext) -> dict:
    """Score a trained generator again (other draws, prompt counts or seeds)."""
    from engine.lora.generator.runs import run_evaluation

    return run_evaluation(params, ctx)
