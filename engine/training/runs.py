"""SFT, GRPO and PPO runs on TRL 1.12: load, save the base, train with the sparsity callback.

Every run writes into its job's result folder: `base/` (the weights before training, saved the
same way as the checkpoints so their tensor names match), `checkpoint-<step>/` every k steps,
and `run.json`. `engine.sparsity.series(result/base, result)` reads that layout. Weights are
stored, updated and saved in the run's `precision` (fp32, or bf16 as seed 000's Gemma runs; fp32
under bf16 autocast for bf16-mixed, which `auto` picks on a CUDA card with bf16); each
checkpoint's safetensors and config.json record that dtype.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.atomic import atomic_dir
from engine.errors import SubnetScopeError
from engine.jobs import JobContext
from engine.jobs.tensorboard import trainer_report_to
from engine.training.callback import SparsityCallback, diagnostics_callbacks
from engine.training.config import (
    GRPORunConfig,
    PPORunConfig,
    RLRunConfig,
    SFTRunConfig,
    TrainConfig,
)
from engine.training.data import prompt_dataset, sft_dataset, texts_for, tokenized_prompts
from engine.training.diagnostics import memorization_split
from engine.training.rewards import (
    FunctionRewardModel,
    RewardFn,
    grpo_reward,
    reward_for,
    sequence_classifier,
)

BASE = "base"
RUN_JSON = "run.json"


def hidden_size(config) -> int:
    """Gemma-3 / Gemma-3n multimodal configs keep hidden_size in text_config, which breaks value
    heads built from `config.hidden_size` (seed 000; https://github.com/huggingface/trl/issues/3828).
    Copy it onto the top-level config so any later reader finds it too."""
    if getattr(config, "hidden_size", None) is None:
        text = getattr(config, "text_config", None)
        if text is None or getattr(text, "hidden_size", None) is None:
            raise SubnetScopeError(f"cannot find hidden_size in the {config.model_type} config")
        config.hidden_size = text.hidden_size
    return int(config.hidden_size)


# The weights' dtype per resolved precision (bf16-mixed keeps fp32 weights under bf16 autocast).
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-mixed": torch.float32}


def training_precision(config: TrainConfig) -> str:
    """fp32 | bf16 | bf16-mixed: what a run's `precision` means on this machine. `auto` is
    bf16-mixed (TRL's bf16=True) on a CUDA card that supports bf16, else fp32: mixed precision on
    a CPU is slower than fp32 there and is never chosen unless asked. Runs without a precision
    (low-rank, masked) train in fp32."""
    precision = getattr(config, "precision", "fp32")
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "fp32"


class ValueHead(nn.Module):
    """TRL 0.8.6's ValueHead without its dropout: Linear(hidden, 1) with bias and PyTorch's
    default init, kept in fp32 and fed the hidden state upcast to fp32 (as 0.8.6 does)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden, 1, dtype=torch.float32)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # (batch, seq, hidden)
        return self.summary(hidden_states.to(self.summary.weight.dtype))  # (batch, seq, 1)


class ScalarHeadModel(nn.Module):
    """A value model as trl.experimental.ppo wants it: `.backbone` (the transformer under the
    LM head) and `.score`, a value head on its last hidden state.

    shared=True puts the head on the policy's own trunk, TRL 0.8.6's
    AutoModelForCausalLMWithValueHead (seed 000): trl.experimental.ppo adds vf_coef · value loss
    to the policy loss and backpropagates the sum, so the value loss trains the trunk too.
    shared=False gives the head its own copy of the starting trunk, trained by the value loss
    alone (the policy never sees that loss).
    """

    base_model_prefix = "backbone"

    def __init__(self, policy: nn.Module, *, shared: bool = True) -> None:
        super().__init__()
        self.config = policy.config
        trunk = getattr(policy, policy.base_model_prefix)
        self.backbone = trunk if shared else copy.deepcopy(trunk)
        self.score = ValueHead(hidden_size(policy.config))


def _common_args(config: TrainConfig, output_dir: Path) -> dict[str, Any]:
    return {
        "output_dir": str(output_dir),
        "max_steps": config.steps,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.lr,
        "seed": config.seed,
        # The job writes TensorBoard itself (JobContext.metric); the trainer gets the rest.
        "report_to": trainer_report_to(config.report_to),
        "logging_steps": 1,
        "save_strategy": "no",  # the callback saves, in the layout the sparsity series reads
        # Autocast only for bf16-mixed; otherwise the weights train in the dtype they were loaded
        # in (fp32 or bf16).
        "bf16": training_precision(config) == "bf16-mixed",
        "use_cpu": not torch.cuda.is_available(),
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def _peft_config(config: TrainConfig):
    if not config.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=2 * config.lora_rank,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _load(config: TrainConfig, ctx: JobContext):
    from engine.models import load_model

    ctx.progress(0.0, f"loading {config.model}")
    torch.manual_seed(config.seed)
    loaded = load_model(
        config.model,
        inference=False,
        dtype=DTYPES[training_precision(config)],
        trust_remote_code=config.trust_remote_code,
    )
    if not loaded.is_causal_lm:
        raise SubnetScopeError(f"'{config.model}' is not a causal language model")
    model, tokenizer = loaded.model.train().requires_grad_(True), loaded.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    hidden_size(model.config)
    return model, tokenizer


def _save_base(model: nn.Module, ctx: JobContext) -> Path:
    ctx.progress(0.02, "saving the base weights")
    base = ctx.result_dir / BASE
    with atomic_dir(base) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
    return base


def _finish(
    config: TrainConfig,
    kind: str,
    ctx: JobContext,
    cb: SparsityCallback,
    model,
    reward: RewardFn | None = None,
) -> dict:
    cb.model = model
    seconds = time.monotonic() - cb.started
    if not cb.checkpoints or cb.checkpoints[-1]["step"] < config.steps:
        cb.save(config.steps)  # the trainer may end a step early (data ran out)
    summary = {
        "kind": kind,
        "base": str(ctx.result_dir / BASE),
        "run_dir": str(ctx.result_dir),
        "steps": config.steps,
        "precision": training_precision(config),  # as resolved: never "auto"
        "seconds": round(seconds, 2),
        "steps_per_s": round(config.steps / seconds, 4) if seconds else None,
        "checkpoints": cb.checkpoints,
        "config": asdict(config),
    }
    if reward is not None:  # what 'auto' resolved to, e.g. the toxicity scorer and its version
        summary["reward"] = getattr(reward, "name", getattr(config, "reward", None))
    ctx.write_json(RUN_JSON, summary)
    ctx.progress(1.0, f"{config.steps} steps, {len(cb.checkpoints)} checkpoints")
    keep = ("kind", "base", "run_dir", "steps", "steps_per_s", "precision")
    return {k: summary[k] for k in keep} | {
        "changed_fraction": cb.checkpoints[-1]["changed_fraction"]
    }


def _callback(config: TrainConfig, ctx: JobContext, base: Path) -> SparsityCallback:
    return SparsityCallback(
        ctx,
        base,
        config.checkpoint_every,
        config.tolerance,
        config.steps,
        ranks=bool(getattr(config, "ranks", False)),
    )


def run_sft(config: SFTRunConfig, ctx: JobContext) -> dict:
    from trl import SFTConfig, SFTTrainer

    train, heldout = memorization_split(texts_for(config), config)
    model, tokenizer = _load(config, ctx)
    base = _save_base(model, ctx)
    cb = _callback(config, ctx, base)
    args = SFTConfig(
        **_common_args(config, ctx.job_dir / "trainer"),
        max_length=config.max_length,
        dataset_text_field="text",
        packing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=sft_dataset(train),
        processing_class=tokenizer,
        callbacks=[
            cb,
            *diagnostics_callbacks(config, ctx, tokenizer=tokenizer, train=train, heldout=heldout),
        ],
        peft_config=_peft_config(config),
    )
    cb.model = trainer.accelerator.unwrap_model(trainer.model)
    ctx.progress(0.05, "training")
    trainer.train()
    return _finish(config, "sft", ctx, cb, cb.model)


def _reward(config: RLRunConfig) -> RewardFn:
    return reward_for(
        config.reward, config.reward_labels, trust_remote_code=config.trust_remote_code
    )


def run_grpo(config: GRPORunConfig, ctx: JobContext) -> dict:
    from trl import GRPOConfig, GRPOTrainer

    reward = _reward(config)  # a bad reward fails before the model loads
    model, tokenizer = _load(config, ctx)
    tokenizer.padding_side = "left"
    base = _save_base(model, ctx)
    cb = _callback(config, ctx, base)
    args = GRPOConfig(
        **_common_args(config, ctx.job_dir / "trainer"),
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=grpo_reward(reward, config.reward),
        args=args,
        train_dataset=prompt_dataset(config, tokenizer),
        processing_class=tokenizer,
        callbacks=[cb, *diagnostics_callbacks(config, ctx)],
        peft_config=_peft_config(config),
    )
    cb.model = trainer.accelerator.unwrap_model(trainer.model)
    ctx.progress(0.05, "training")
    trainer.train()
    return _finish(config, "grpo", ctx, cb, cb.model, reward)


def _value_classifier(source: str, trust_remote_code: bool) -> nn.Module:
    """A separate value model: a sequence-classification model with one output (its score head
    read at every token)."""
    model = sequence_classifier(
        source,
        "a sequence-classification model (value_model)",
        num_labels=1,
        trust_remote_code=trust_remote_code,
    )
    hidden_size(model.config)
    return model


def run_ppo(config: PPORunConfig, ctx: JobContext) -> dict:
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    policy, tokenizer = _load(config, ctx)
    tokenizer.padding_side = "left"
    base = _save_base(policy, ctx)
    cb = _callback(config, ctx, base)
    dataset = tokenized_prompts(config, tokenizer)
    reward = _reward(config)
    reward_model = FunctionRewardModel(
        reward, tokenizer, dataset["input_ids"], scale=config.reward_scale
    )
    value_model = (
        _value_classifier(config.value_model, config.trust_remote_code)
        if config.value_model
        else ScalarHeadModel(policy, shared=config.value_head == "shared")
    )
    # Frozen reference: a copy of the policy (seed 000); with LoRA, TRL uses the adapter-free
    # policy itself.
    ref_model = None if config.lora else copy.deepcopy(policy).eval().requires_grad_(False)
    common = _common_args(config, ctx.job_dir / "trainer")
    common.pop("max_steps")
    args = PPOConfig(
        **common,
        total_episodes=config.steps * config.batch_size,
        num_mini_batches=config.num_mini_batches,
        local_rollout_forward_batch_size=config.batch_size,
        response_length=config.max_completion_length,
        temperature=config.temperature,
        kl_coef=config.kl_coef,
        vf_coef=config.vf_coef,
        num_ppo_epochs=config.num_ppo_epochs,
        lr_scheduler_type="constant",  # TRL 0.8.6 (seed 000) keeps the learning rate fixed
        stop_token="eos",  # noqa: S106 (a token name, not a password)
        num_sample_generations=0,
    )
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref_model,
        reward_model=reward_model,
        train_dataset=dataset,
        value_model=value_model,
        callbacks=[cb, *diagnostics_callbacks(config, ctx)],
        peft_config=_peft_config(config),
    )
    cb.model = trainer.accelerator.unwrap_model(trainer.model).policy
    ctx.progress(0.05, "training")
    trainer.train()
    return _finish(config, "ppo", ctx, cb, cb.model, reward)


RUNS = {"sft": run_sft, "grpo": run_grpo, "ppo": run_ppo}
