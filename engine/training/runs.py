"""SFT, GRPO and PPO runs on TRL 1.12: load, save the base, train with the sparsity callback.

Every run writes into its job's result folder: `base/` (the weights before training, saved the
same way as the checkpoints so their tensor names match), `checkpoint-<step>/` every k steps,
and `run.json`. `engine.sparsity.series(result/base, result)` reads that layout.
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
from engine.training.callback import SparsityCallback
from engine.training.config import GRPORunConfig, PPORunConfig, SFTRunConfig, TrainConfig
from engine.training.data import prompt_dataset, sft_dataset, tokenized_prompts
from engine.training.rewards import FunctionRewardModel, grpo_reward, named_reward

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


class ScalarHeadModel(nn.Module):
    """A value model as trl.experimental.ppo wants it: `.backbone` (a copy of the policy's
    transformer) and `.score`, a linear map from the last hidden state to one value per token."""

    base_model_prefix = "backbone"

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.config = policy.config
        self.backbone = copy.deepcopy(getattr(policy, policy.base_model_prefix))
        self.score = nn.Linear(hidden_size(policy.config), 1, bias=False)
        nn.init.normal_(self.score.weight, std=1e-3)


def _common_args(config: TrainConfig, output_dir: Path) -> dict[str, Any]:
    return {
        "output_dir": str(output_dir),
        "max_steps": config.steps,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.lr,
        "seed": config.seed,
        "report_to": [] if config.report_to == "none" else [config.report_to],
        "logging_steps": 1,
        "save_strategy": "no",  # the callback saves, in the layout the sparsity series reads
        "bf16": False,  # fp32 weights: bf16 storage would hide small updates (PULSE's caveat)
        "use_cpu": not torch.cuda.is_available(),
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def _peft_config(config: TrainConfig):
    if not config.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank, lora_alpha=2 * config.lora_rank, target_modules="all-linear",
        task_type="CAUSAL_LM",
    )  # fmt: skip


def _load(config: TrainConfig, ctx: JobContext):
    from engine.models import load_model

    ctx.progress(0.0, f"loading {config.model}")
    torch.manual_seed(config.seed)
    loaded = load_model(
        config.model, inference=False, dtype=torch.float32,
        trust_remote_code=config.trust_remote_code,
    )  # fmt: skip
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


def _finish(config: TrainConfig, kind: str, ctx: JobContext, cb: SparsityCallback, model) -> dict:
    cb.model = model
    seconds = time.monotonic() - cb.started
    if not cb.checkpoints or cb.checkpoints[-1]["step"] < config.steps:
        cb.save(config.steps)  # the trainer may end a step early (data ran out)
    summary = {
        "kind": kind,
        "base": str(ctx.result_dir / BASE),
        "run_dir": str(ctx.result_dir),
        "steps": config.steps,
        "seconds": round(seconds, 2),
        "steps_per_s": round(config.steps / seconds, 4) if seconds else None,
        "checkpoints": cb.checkpoints,
        "config": asdict(config),
    }
    ctx.write_json(RUN_JSON, summary)
    ctx.progress(1.0, f"{config.steps} steps, {len(cb.checkpoints)} checkpoints")
    return {k: summary[k] for k in ("kind", "base", "run_dir", "steps", "steps_per_s")} | {
        "changed_fraction": cb.checkpoints[-1]["changed_fraction"]
    }


def _callback(config: TrainConfig, ctx: JobContext, base: Path) -> SparsityCallback:
    return SparsityCallback(ctx, base, config.checkpoint_every, config.tolerance, config.steps)


def run_sft(config: SFTRunConfig, ctx: JobContext) -> dict:
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = _load(config, ctx)
    base = _save_base(model, ctx)
    cb = _callback(config, ctx, base)
    args = SFTConfig(
        **_common_args(config, ctx.job_dir / "trainer"), max_length=config.max_length,
        dataset_text_field="text", packing=False,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=sft_dataset(config), processing_class=tokenizer,
        callbacks=[cb], peft_config=_peft_config(config),
    )  # fmt: skip
    cb.model = trainer.accelerator.unwrap_model(trainer.model)
    ctx.progress(0.05, "training")
    trainer.train()
    return _finish(config, "sft", ctx, cb, cb.model)


def _grpo_reward(config: GRPORunConfig):
    fn = named_reward(config.reward)
    return grpo_reward(fn, config.reward) if fn is not None else config.reward


def run_grpo(config: GRPORunConfig, ctx: JobContext) -> dict:
    from trl import GRPOConfig, GRPOTrainer

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
        model=model, reward_funcs=_grpo_reward(config), args=args,
        train_dataset=prompt_dataset(config, tokenizer), processing_class=tokenizer,
        callbacks=[cb], peft_config=_peft_config(config),
    )  # fmt: skip
    cb.model = trainer.accelerator.unwrap_model(trainer.model)
    ctx.progress(0.05, "training")
    trainer.train()
    return _finish(config, "grpo", ctx, cb, cb.model)


def _sequence_classifier(source: str, trust_remote_code: bool) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise SubnetScopeError(
            f"'{source}' is neither a named reward nor a sequence-classification model: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    hidden_size(model.config)
    return model


def run_ppo(config: PPORunConfig, ctx: JobContext) -> dict:
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    policy, tokenizer = _load(config, ctx)
    tokenizer.padding_side = "left"
    base = _save_base(policy, ctx)
    cb = _callback(config, ctx, base)
    dataset = tokenized_prompts(config, tokenizer)
    fn = named_reward(config.reward)
    reward_model = (
        FunctionRewardModel(fn, tokenizer, dataset["input_ids"])
        if fn is not None
        else _sequence_classifier(config.reward, config.trust_remote_code)
    )
    value_model = (
        _sequence_classifier(config.value_model, config.trust_remote_code)
        if config.value_model
        else ScalarHeadModel(policy)
    )
    # Frozen reference: a copy of the policy (seed 000); with LoRA, TRL uses the adapter-free
    # policy itself.
    ref_model = None if config.lora else copy.deepcopy(policy).eval().requires_grad_(False)
    common = _common_args(config, ctx.job_dir / "trainer")
    common.pop("max_steps")
    args = PPOConfig(
        **common,
        total_episodes=config.steps * config.batch_size,
        num_mini_batches=1,
        local_rollout_forward_batch_size=config.batch_size,
        response_length=config.max_completion_length,
        temperature=config.temperature,
        kl_coef=config.kl_coef,
        num_ppo_epochs=config.num_ppo_epochs,
        stop_token="eos",  # noqa: S106 (a token name, not a password)
        num_sample_generations=0,
    )
    trainer = PPOTrainer(
        args=args, processing_class=tokenizer, model=policy, ref_model=ref_model,
        reward_model=reward_model, train_dataset=dataset, value_model=value_model,
        callbacks=[cb], peft_config=_peft_config(config),
    )  # fmt: skip
    cb.model = trainer.accelerator.unwrap_model(trainer.model).policy
    ctx.progress(0.05, "training")
    trainer.train()
    return _finish(config, "ppo", ctx, cb, cb.model)


RUNS = {"sft": run_sft, "grpo": run_grpo, "ppo": run_ppo}
