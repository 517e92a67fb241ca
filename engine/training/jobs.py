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


demo_part(
    DemoPart(
        name="sft-run",
        title="SFT run on the demo model (bf16 weights)",
        job_kind="train.sft",
        # bf16 like the RL runs, so SFT against RL compares methods, not precisions.
        params={
            "model": "demo",
            "dataset": "demo-general",
            "steps": 30,
            "batch_size": 4,
            "lr": 1e-5,
            "checkpoint_every": 10,
            "max_length": 64,
            "precision": "bf16",
        },
        view="sparsity",
    )
)

DEMO_GRPO = {
    "model": "demo",
    "reward": "brevity",
    "steps": 24,
    "batch_size": 4,
    "num_generations": 4,
    "lr": 1e-5,
    "checkpoint_every": 8,
    "max_completion_length": 24,
}

demo_part(
    DemoPart(
        name="grpo-run",
        title="GRPO run on the demo model (brevity reward, bf16 weights)",
        job_kind="train.grpo",
        # bf16 weights as seed 000's Gemma runs: the RL update's sparsity the seed reports.
        params={**DEMO_GRPO, "precision": "bf16"},
        view="sparsity",
    )
)

demo_part(
    DemoPart(
        name="grpo-run-fp32",
        title="The same GRPO run in fp32 (why an fp32 run looks dense)",
        job_kind="train.grpo",
        params={**DEMO_GRPO, "precision": "fp32"},
        view="sparsity",
    )
)

demo_part(
    DemoPart(
        name="ppo-run",
        title="PPO run on the demo model (non-toxicity reward, shared value head, bf16)",
        job_kind="train.ppo",
        # Seed 000's set-up scaled to the demo: a classifier-like logit-difference reward that
        # ships offline, the value head on the policy's trunk, bf16 weights, τ = 1e-6 + ranks.
        params={
            "model": "demo",
            "reward": "non_toxicity",
            "steps": 12,
            "batch_size": 4,
            "lr": 1e-5,
            "checkpoint_every": 4,
            "max_completion_length": 24,
            "precision": "bf16",
            "value_head": "shared",
            "tolerance": 1e-6,
            "ranks": True,
        },
        view="sparsity",
    )
)


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


# The LoRA blender's demo: three task adapters on contrasting local sources (prose, Python
# source, arithmetic instructions), in this order. Adapter name -> (title, train.lora params).
DEMO_LORA_COMMON = {
    "model": "demo",
    "steps": 30,
    "batch_size": 4,
    "max_length": 64,
    "lora_rank": 8,
    "lora_alpha": 16.0,
    "lr": 5e-4,
    "rank_every": 5,
    "eval_texts": 8,
    "seed": 0,
}
DEMO_ADAPTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo-prose": (
        "LoRA adapter on prose (demo-general)",
        {**DEMO_LORA_COMMON, "dataset": "demo-general"},
    ),
    "demo-code": (
        "LoRA adapter on Python source (demo-code)",
        {**DEMO_LORA_COMMON, "dataset": "demo-code"},
    ),
    "demo-arithmetic": (
        "LoRA adapter on arithmetic instructions (demo-arithmetic)",
        {**DEMO_LORA_COMMON, "dataset": "demo-arithmetic"},
    ),
}

for _name, (_title, _params) in DEMO_ADAPTERS.items():
    demo_part(
        DemoPart(name=_name, title=_title, job_kind="train.lora", params=_params, view="lora")
    )
