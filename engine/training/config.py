"""Run options as dataclasses: each field's help text serves the YAML CLI, the job form and docs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.errors import SubnetScopeError

DEMO_PROMPTS = "demo-prompts"  # the built-in prompt set (engine/training/data.py)


@dataclass(frozen=True)
class TrainConfig:
    """Options every run shares."""

    model: str = field(
        default="demo",
        metadata={"help": "model to fine-tune: 'demo', a local folder, a .gguf file or a hub id"},
    )
    dataset: str = field(
        default=DEMO_PROMPTS,
        metadata={
            "help": "texts or prompts: 'demo-prompts' (built in), 'demo-general', a "
            ".txt/.jsonl/.parquet file or a hub dataset id (engine.data.load_texts)"
        },
    )
    text_field: str | None = field(
        default=None, metadata={"help": "field holding the text; empty picks it automatically"}
    )
    limit: int | None = field(default=None, metadata={"help": "use at most this many texts"})
    steps: int = field(default=20, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=4, metadata={"help": "sequences (or rollouts) per step"})
    lr: float = field(default=1e-5, metadata={"help": "learning rate"})
    checkpoint_every: int = field(
        default=10,
        metadata={
            "help": "save checkpoint-<step>/ and log sparsity against the base every k steps"
        },
    )
    tolerance: float = field(
        default=1e-5,
        metadata={"help": "τ: a weight counts as changed when |Δ| > τ (seed 000's check_sparsity)"},
    )
    seed: int = field(default=0, metadata={"help": "random seed (data order, sampling, heads)"})
    report_to: str = field(
        default="none",
        metadata={"help": "TRL/transformers report_to: 'none', 'tensorboard', 'wandb', ..."},
    )
    lora: bool = field(
        default=False,
        metadata={
            "help": "train a LoRA adapter instead of every weight (off: the sparsity of full "
            "updates is the research question)"
        },
    )
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank r (with lora)"})
    max_length: int = field(
        default=64, metadata={"help": "longest prompt (RL) or training sequence (SFT), in tokens"}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "run the model repository's own code (only if trusted)"}
    )

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "max_length", "lora_rank"):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        if not float(self.tolerance) >= 0:
            raise SubnetScopeError(f"tolerance must be ≥ 0, not {self.tolerance}")

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)

    @classmethod
    def from_params(cls, params: dict[str, Any] | None, *, what: str = "params") -> TrainConfig:
        """The config from a job's params or a YAML file; unknown keys are one clear error."""
        params = dict(params or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise SubnetScopeError(
                f"{what}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"known keys: {', '.join(known)}"
            )
        try:
            return cls(**params)
        except TypeError as exc:
            raise SubnetScopeError(f"{what}: {exc}") from None

    def to_params(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SFTRunConfig(TrainConfig):
    """Supervised fine-tuning (next-token loss on texts) with trl.SFTTrainer."""

    dataset: str = field(
        default="demo-general",
        metadata={"help": TrainConfig.help("dataset") + "; SFT trains on whole texts"},
    )


@dataclass(frozen=True)
class RLRunConfig(TrainConfig):
    """What GRPO and PPO share: a reward and sampled completions."""

    reward: str = field(
        default="brevity",
        metadata={
            "help": "a named reward (brevity, ends_with_period, contains_word:WORD, length:N) or "
            "a sequence-classification model folder / hub id"
        },
    )
    max_completion_length: int = field(
        default=24, metadata={"help": "longest sampled completion, in tokens"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})


@dataclass(frozen=True)
class GRPORunConfig(RLRunConfig):
    """Group-relative policy optimization with trl.GRPOTrainer."""

    num_generations: int = field(
        default=4,
        metadata={"help": "completions sampled per prompt (a group); batch_size must divide by it"},
    )
    beta: float = field(default=0.0, metadata={"help": "KL coefficient against the reference"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_generations < 2 or self.batch_size % self.num_generations:
            raise SubnetScopeError(
                f"GRPO needs num_generations ≥ 2 dividing batch_size "
                f"({self.num_generations} and {self.batch_size})"
            )


@dataclass(frozen=True)
class PPORunConfig(RLRunConfig):
    """PPO with trl.experimental.ppo: policy, frozen reference, reward model, value model."""

    kl_coef: float = field(default=0.05, metadata={"help": "KL penalty against the reference"})
    num_ppo_epochs: int = field(default=1, metadata={"help": "PPO epochs over each rollout batch"})
    value_model: str | None = field(
        default=None,
        metadata={
            "help": "value model folder / hub id (sequence classification); empty: a scalar head "
            "on a copy of the policy's backbone"
        },
    )


CONFIGS: dict[str, type[TrainConfig]] = {
    "sft": SFTRunConfig,
    "grpo": GRPORunConfig,
    "ppo": PPORunConfig,
}
