"""Job kinds `train.sft`, `train.grpo`, `train.ppo`, `train.sft_masked`, `train.lora`,
`train.relora`, `train.rank1`, and the demo's runs and task adapters."""

from __future__ import annotations

from typing import Any

from engine.jobs import JobContext, job
from engine.training.config import (
    GRPORunConfig,
    LoRARunConfig,
    MaskedSFTConfig,
    PPORunConfig,
    Rank1Config,
    ReLoRAConfig,
    SFTRunConfig,
)


def _run(kind: str, cls, params: dict[str, Any], ctx: JobContext) -> dict:
    from engine.training.runs import RUNS

    return RUNS[kind](cls.from_params(params, what=f"train.{kind} params"), ctx)


@job(
    "train.sft",
    title="SFT run: checkpoints and sparsity against the base",
    result_page="sparsity",
    defaults=SFTRunConfig().to_params(),
    mem_gb=4.0,  # measured on the demo model: 3.15 GB peak (VmHWM)
)
def train_sft(params: dict[str, Any], ctx: JobContext) -> dict:
    """Supervised fine-tuning with trl.SFTTrainer; sparsity logged at every checkpoint."""
    return _run("sft", SFTRunConfig, params, ctx)


@job(
    "train.grpo",
    title="GRPO run: checkpoints and sparsity against the base",
    result_page="sparsity",
    defaults=GRPORunConfig().to_params(),
    mem_gb=4.0,  # measured on the demo model: 3.16 GB peak (VmHWM)
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
    """PPO with trl.experimental.ppo (policy, reference, reward, value head on the policy's
    trunk by default, as seed 000); sparsity and update ranks per checkpoint."""
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


@job(
    "train.lora",
    title="LoRA task adapter: PEFT folder, held-out perplexity, rank of B @ A over steps",
    result_page="lora",
    defaults=LoRARunConfig().to_params(),
    mem_gb=2.5,  # measured on the demo model: 1.70 GB peak (VmHWM)
)
def train_lora(params: dict[str, Any], ctx: JobContext) -> dict:
    """LoRA SFT with PEFT + TRL; writes result/adapter/ (a PEFT folder) and run.json."""
    from engine.training.lora_runs import run_lora

    return run_lora(LoRARunConfig.from_params(params, what="train.lora params"), ctx)


@job(
    "train.relora",
    title="ReLoRA run: full-rank warm start, merges and restarts, jagged schedule, rank of the "
    "accumulated update",
    result_page="lora",
    defaults=ReLoRAConfig().to_params(),
)
def train_relora(params: dict[str, Any], ctx: JobContext) -> dict:
    """ReLoRA (arXiv 2307.05695) after a full-rank warm start; writes result/model/ (merged)
    and run.json."""
    from engine.training.relora import run_relora

    return run_relora(ReLoRAConfig.from_params(params, what="train.relora params"), ctx)


@job(
    "train.rank1",
    title="Rank-1 merging run: each step's best rank-1 update (or a random-projection LoRA)",
    result_page="lora",
    defaults=Rank1Config().to_params(),
)
def train_rank1(params: dict[str, Any], ctx: JobContext) -> dict:
    """Dynamic rank-1 merging (seed 003); writes result/model/ and run.json."""
    from engine.training.rank1 import run_rank1

    return run_rank1(Rank1Config.from_params(params, what="train.rank1 params"), ctx)
