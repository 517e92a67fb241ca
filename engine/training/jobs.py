"""Job kinds `train.sft`, `train.grpo`, `train.ppo`, and the demo's two runs."""

from __future__ import annotations

from typing import Any

from engine.demo.parts import DemoPart, demo_part
from engine.jobs import JobContext, job
from engine.training.config import GRPORunConfig, MaskedSFTConfig, PPORunConfig, SFTRunConfig


def _run(kind: str, cls, params: dict[str, Any], ctx: JobContext) -> dict:
    from engine.training.runs import RUNS

    return RUNS[kind](cls.from_params(params, what=f"train.{kind} params"), ctx)


@job(
    "train.sft",
    title="SFT run: checkpoints and sparsity against the base",
    result_page="sparsity",
    defaults=SFTRunConfig().to_params(),
)
def train_sft(params: dict[str, Any], ctx: JobContext) -> dict:
    """Supervised fine-tuning with trl.SFTTrainer; sparsity logged at every checkpoint."""
    return _run("sft", SFTRunConfig, params, ctx)


@job(
    "train.grpo",
    title="GRPO run: checkpoints and sparsity against the base",
    result_page="sparsity",
    defaults=GRPORunConfig().to_params(),
)
def train_grpo(params: dict[str, Any], ctx: JobContext) -> dict:
    """GRPO with trl.GRPOTrainer and a named or model reward; sparsity at every checkpoint."""
    return _run("grpo", GRPORunConfig, params, ctx)


@job(
    "train.ppo",
    title="PPO run: checkpoints and sparsity against the base",
    result_page="sparsity",
    defaults=PPORunConfig().to_params(),
)
def train_ppo(params: dict[str, Any], ctx: JobContext) -> dict:
    """PPO with trl.experimental.ppo (policy, reference, reward, value); sparsity per checkpoint."""
    return _run("ppo", PPORunConfig, params, ctx)


@job(
    "train.sft_masked",
    title="Masked LoRA SFT: ICA lesion / preserve, anti-drift, forgetting",
    result_page="ica",
    defaults=MaskedSFTConfig().to_params(),
)
def train_sft_masked(params: dict[str, Any], ctx: JobContext) -> dict:
    """LoRA SFT with ICA masks (seed 001); new-task and general perplexity before and after."""
    from engine.training.masked import run_sft_masked

    return run_sft_masked(MaskedSFTConfig.from_params(params, what="train.sft_masked params"), ctx)


demo_part(
    DemoPart(
        name="sft-run",
        title="SFT run on the demo model",
        job_kind="train.sft",
        params={"model": "demo", "dataset": "demo-general", "steps": 30, "batch_size": 4,
                "lr": 1e-5, "checkpoint_every": 10, "max_length": 64},
        view="sparsity",
    )
)  # fmt: skip

demo_part(
    DemoPart(
        name="grpo-run",
        title="GRPO run on the demo model (brevity reward)",
        job_kind="train.grpo",
        params={"model": "demo", "reward": "brevity", "steps": 24, "batch_size": 4,
                "num_generations": 4, "lr": 1e-5, "checkpoint_every": 8,
                "max_completion_length": 24},
        view="sparsity",
    )
)  # fmt: skip
