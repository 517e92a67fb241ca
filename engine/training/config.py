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


MASK_MODES = ("lesion", "preserve")
APPLY_TO = ("auto", "lora", "base", "both")


def _component_ids(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in value.strip("[] ").replace(" ", "").split(",") if v]
    if isinstance(value, int):
        value = [value]
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise SubnetScopeError(
            f"ica_component_ids must be integers like 0,1 — not {value!r}"
        ) from None


@dataclass(frozen=True)
class MaskedSFTConfig(TrainConfig):
    """LoRA SFT on instruction data with ICA lesion / preserve masks and anti-drift (seed 001)."""

    dataset: str = field(
        default="demo-arithmetic",
        metadata={
            "help": "instruction data: a .jsonl/.json/.parquet file in any supported format "
            "(instruction/response, question/answer, prompt/completion, messages, ...) or "
            "'demo-arithmetic' (built in)"
        },
    )
    lora: bool = field(default=True, metadata={"help": "train a LoRA adapter (off: full SFT)"})
    lr: float = field(default=2e-4, metadata={"help": "learning rate"})
    steps: int = field(default=30, metadata={"help": "optimizer steps"})
    template: str = field(
        default="auto", metadata={"help": "prompt template: auto, chat, alpaca, chatml, basic"}
    )
    mask_mode: str | None = field(
        default=None,
        metadata={"help": "ICA masking: empty (none), lesion (zero the chosen components' "
                  "key neurons) or preserve (zero every other neuron)"},
    )  # fmt: skip
    ica_templates: str = field(
        default="demo", metadata={"help": "templates .json, or 'demo' for the demo's templates"}
    )
    ica_component_ids: tuple[int, ...] = field(
        default=(0,), metadata={"help": "components to lesion or preserve, e.g. 0,1"}
    )
    anti_drift_row_param: bool = field(
        default=False,
        metadata={"help": "W_eff = frozen + row_mask * delta: masked neurons' weights cannot "
                  "drift under Adam"},
    )  # fmt: skip
    anti_drift_apply_to: str = field(
        default="auto", metadata={"help": "where anti-drift applies: auto, lora, base, both"}
    )
    anti_drift_bake: bool = field(
        default=True,
        metadata={"help": "at the end keep the trained weights (off: restore the frozen ones)"},
    )
    eval_examples: int = field(
        default=32, metadata={"help": "task examples held out to score the new task"}
    )
    eval_general: str = field(
        default="demo-general", metadata={"help": "general text that measures forgetting"}
    )
    eval_general_texts: int = field(
        default=16, metadata={"help": "general texts scored before and after"}
    )
    group: str | None = field(
        default=None, metadata={"help": "a label tying the runs of one comparison together"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mask_mode in ("", "none", "null"):
            object.__setattr__(self, "mask_mode", None)
        if self.mask_mode is not None and self.mask_mode not in MASK_MODES:
            raise SubnetScopeError(
                f"mask_mode must be empty, lesion or preserve, not '{self.mask_mode}'"
            )
        if self.anti_drift_apply_to not in APPLY_TO:
            raise SubnetScopeError(
                f"anti_drift_apply_to must be one of {', '.join(APPLY_TO)}, "
                f"not '{self.anti_drift_apply_to}'"
            )
        object.__setattr__(self, "ica_component_ids", _component_ids(self.ica_component_ids))
        if self.mask_mode and not self.ica_component_ids:
            raise SubnetScopeError("a masked run needs at least one ICA component id")
        if self.eval_examples < 1 or self.eval_general_texts < 1:
            raise SubnetScopeError("eval_examples and eval_general_texts must be ≥ 1")

    def to_params(self) -> dict[str, Any]:
        out = asdict(self)
        out["ica_component_ids"] = list(self.ica_component_ids)
        return out


def three_way(params: dict[str, Any], group: str) -> list[dict[str, Any]]:
    """Seed 001's comparison: LoRA only, LoRA + ICA lesion, LoRA + ICA preserve (same data,
    steps and seed), as three runs' params sharing `group`."""
    base = {**params, "group": group, "lora": True}
    return [
        {**base, "mask_mode": None, "anti_drift_row_param": False},
        {**base, "mask_mode": "lesion"},
        {**base, "mask_mode": "preserve"},
    ]


CONFIGS: dict[str, type[TrainConfig]] = {
    "sft": SFTRunConfig,
    "grpo": GRPORunConfig,
    "ppo": PPORunConfig,
    "sft_masked": MaskedSFTConfig,
}
