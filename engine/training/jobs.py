"""Job kinds `train.sft`, `train.grpo`, `train.ppo`, `train.sft_masked`, `train.lora`,
`train.relora`, `train.rank1`, and the demo's runs and task adapters."""

from __future__ import annotations

from typing import Any

from engine.demo.parts import DemoPart, demo_part
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
    title="ReLoRA run: merges and restarts, jagged schedule, rank of the accumulated update",
    result_page="lora",
    defaults=ReLoRAConfig().to_params(),
)
def train_relora(params: dict[str, Any], ctx: JobContext) -> dict:
    """ReLoRA (arXiv 2307.05695); writes result/model/ (merged) and run.json."""
    from engine.training.relora import run_relora

    return run_relora(ReLoRAConfig.from_params(params, what="train.relora params"), ctx)


@job(
    "train.rank1",
    title="Rank-1 merging run: a fresh rank-1 LoRA merged every step",
    result_page="lora",
    defaults=Rank1Config().to_params(),
)
def train_rank1(params: dict[str, Any], ctx: JobContext) -> dict:
    """Dynamic rank-1 merging (seed 003); writes result/model/ and run.json."""
    from engine.training.rank1 import run_rank1

    return run_rank1(Rank1Config.from_params(params, what="train.rank1 params"), ctx)


# The LoRA blender's demo: three task adapters on contrasting local sources (prose, Python
# source, arithmetic instructions), in this order. Adapter name -> (title, train.lora params).
DEMO_LORA_COMMON = {"model": "demo", "steps": 30, "batch_size": 4, "max_length": 64,
                    "lora_rank": 8, "lora_alpha": 16.0, "lr": 5e-4, "rank_every": 5,
                    "eval_texts": 8, "seed": 0}  # fmt: skip
DEMO_ADAPTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo-prose": ("LoRA adapter on prose (demo-general)",
                   {**DEMO_LORA_COMMON, "dataset": "demo-general"}),
    "demo-code": ("LoRA adapter on Python source (demo-code)",
                  {**DEMO_LORA_COMMON, "dataset": "demo-code"}),
    "demo-arithmetic": ("LoRA adapter on arithmetic instructions (demo-arithmetic)",
                        {**DEMO_LORA_COMMON, "dataset": "demo-arithmetic"}),
}  # fmt: skip

for _name, (_title, _params) in DEMO_ADAPTERS.items():
    demo_part(DemoPart(name=_name, title=_title, job_kind="train.lora", params=_params,
                       view="lora"))  # fmt: skip
