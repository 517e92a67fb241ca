"""Job kinds `train.sft`, `train.grpo`, `train.ppo`, `train.sft_masked`, `train.lora`,
`train.relora`, `train.rank1`, `train.full`, `train.lora_teachers`, and the demo's runs and task
adapters."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from engine.errors import SubnetScopeError
from engine.jobs import JobContext, job
from engine.models.precision import dtype_choice
from engine.training.config import (
    FullConfig,
    GRPORunConfig,
    LoRARunConfig,
    MaskedSFTConfig,
    PPORunConfig,
    Rank1Config,
    ReLoRAConfig,
    SFTRunConfig,
)
from engine.training.teachers_config import TeachersConfig

FIXED_FP32 = "float32 (the method's fixed precision)"
# A run's resolved precision (engine/training/runs.py, training_precision) as the dtype it ran in.
_RAN_IN = {"fp32": "float32", "bf16": "bfloat16", "bf16-mixed": "float32 (bf16 autocast)"}


def _with_dtype(cls, params: dict[str, Any], kind: str) -> tuple[dict[str, Any], bool]:
    """`dtype` (auto | bf16 | fp16 | fp32) as the run's `precision` where the run has one (auto:
    the precision given, else the run's own default); the params without it, and whether the run
    has a precision (the low-rank and masked runs train in float32 whatever is asked)."""
    params = dict(params)
    dtype = dtype_choice(params.pop("dtype", None))
    if "precision" not in {f.name for f in fields(cls)}:
        return params, False
    if dtype == "fp16":
        raise SubnetScopeError(f"train.{kind} trains in fp32 or bf16, not fp16")
    if dtype != "auto":
        default = cls.__dataclass_fields__["precision"].default
        given = params.get("precision", default)
        if given not in (default, dtype):
            raise SubnetScopeError(
                f"train.{kind}: dtype '{dtype}' and precision '{given}' disagree; give one"
            )
        params["precision"] = dtype
    return params, True


def _ran_in(result: dict, has_precision: bool) -> dict:
    """The run's result with the dtype it trained in."""
    if not has_precision:
        return result | {"dtype": FIXED_FP32}
    precision = result.get("precision")
    return result | {"dtype": _RAN_IN.get(precision, precision)}


def _run(kind: str, cls, params: dict[str, Any], ctx: JobContext) -> dict:
    from engine.training.runs import RUNS

    params, has_precision = _with_dtype(cls, params, kind)
    config = cls.from_params(params, what=f"train.{kind} params")
    return _ran_in(RUNS[kind](config, ctx), has_precision)


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

    params, has_precision = _with_dtype(MaskedSFTConfig, params, "sft_masked")
    config = MaskedSFTConfig.from_params(params, what="train.sft_masked params")
    return _ran_in(run_sft_masked(config, ctx), has_precision)


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

    params, has_precision = _with_dtype(LoRARunConfig, params, "lora")
    config = LoRARunConfig.from_params(params, what="train.lora params")
    return _ran_in(run_lora(config, ctx), has_precision)


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

    params, has_precision = _with_dtype(ReLoRAConfig, params, "relora")
    config = ReLoRAConfig.from_params(params, what="train.relora params")
    return _ran_in(run_relora(config, ctx), has_precision)


@job(
    "train.rank1",
    title="Rank-1 merging run: each step's best rank-1 update (or a random-projection LoRA)",
    result_page="lora",
    defaults=Rank1Config().to_params(),
)
def train_rank1(params: dict[str, Any], ctx: JobContext) -> dict:
    """Dynamic rank-1 merging (seed 003); writes result/model/ and run.json."""
    from engine.training.rank1 import run_rank1

    params, has_precision = _with_dtype(Rank1Config, params, "rank1")
    config = Rank1Config.from_params(params, what="train.rank1 params")
    return _ran_in(run_rank1(config, ctx), has_precision)


@job(
    "train.full",
    title="Full fine-tuning run on the low-rank runs' data and steps, rank of the accumulated "
    "update (the baseline for LoRA, ReLoRA and rank-1)",
    result_page="lora",
    defaults=FullConfig().to_params(),
)
def train_full(params: dict[str, Any], ctx: JobContext) -> dict:
    """Full fine-tuning (seed 003's comparison); writes result/model/ and run.json."""
    from engine.training.full_ft import run_full

    params, has_precision = _with_dtype(FullConfig, params, "full")
    config = FullConfig.from_params(params, what="train.full params")
    return _ran_in(run_full(config, ctx), has_precision)


@job(
    "train.lora_teachers",
    title="LoRA teachers: checkpoints along each task's trajectory, prompts, delta activations",
    result_page="lora",
    defaults=TeachersConfig().to_params(),
    mem_gb=2.5,  # measured on the demo model: 1.62 GB peak (VmHWM), one task
)
def train_lora_teachers(params: dict[str, Any], ctx: JobContext) -> dict:
    """Teacher adapters for the LoRA generator (issue 20, seed 004); writes result/checkpoints/."""
    from engine.training.teachers import run_teachers

    config = TeachersConfig.from_params(params, what="train.lora_teachers params")
    return run_teachers(config, ctx)
