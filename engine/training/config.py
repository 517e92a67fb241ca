"""Run options as dataclasses: each field's help text serves the YAML CLI, the job form and docs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.errors import SubnetScopeError

DEMO_PROMPTS = "demo-prompts"  # the built-in prompt set (engine/training/data.py)
# fp32 and bf16: the weights' own dtype, no autocast. bf16-mixed: TRL's bf16=True (fp32 weights and
# optimizer, bf16 autocast). auto: bf16-mixed on a CUDA card that supports bf16, else fp32 — a CPU
# never trains in mixed precision unless asked (engine/training/runs.py, training_precision).
PRECISIONS = ("fp32", "bf16", "bf16-mixed", "auto")
VALUE_HEADS = ("shared", "separate")


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
        default="tensorboard",
        metadata={
            "help": "'tensorboard': every metric of the job also goes to TensorBoard event files "
            "in <job>/tensorboard/ (python -m engine jobs tensorboard serves them); 'none': "
            "off; other TRL/transformers integrations ('wandb', 'mlflow', …, comma separated) "
            "reach the TRL runs' trainers (sft, grpo, ppo, lora, sft_masked) only"
        },
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
    diagnostics_every: int = field(
        default=0,
        metadata={
            "help": "every k steps record per layer and module the gradient norm (before "
            "clipping), the step's update norm and the parameter norm, and each block's output "
            "activation mean / std / RMS, to diagnostics.parquet and diag/* metrics (0: off; "
            "engine/training/diagnostics.py)"
        },
    )

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "max_length", "lora_rank"):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        if not float(self.tolerance) >= 0:
            raise SubnetScopeError(f"tolerance must be ≥ 0, not {self.tolerance}")
        if int(self.diagnostics_every) < 0:
            raise SubnetScopeError(
                f"diagnostics_every must be ≥ 0 (0: off), not {self.diagnostics_every}"
            )
        if int(getattr(self, "memorization_examples", 1)) < 1:
            raise SubnetScopeError(
                f"memorization_examples must be ≥ 1, not {self.memorization_examples}"
            )

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


def _precision_field():
    # On the SFT / GRPO / PPO runs only: the low-rank and masked runs train in fp32.
    return field(
        default="auto",
        metadata={
            "help": "dtype the trained weights are stored, updated and checkpointed in: fp32, or "
            "bf16 as seed 000's Gemma runs (updates smaller than half a bf16 step round away, "
            "so bf16 runs change far fewer weights); bf16-mixed: fp32 weights with TRL's bf16 "
            "autocast; auto: bf16-mixed on a CUDA GPU with bf16, fp32 elsewhere (CPU, MPS)"
        },
    )


def _check_precision(value: str) -> None:
    if value not in PRECISIONS:
        raise SubnetScopeError(f"precision must be one of {', '.join(PRECISIONS)}, not '{value}'")


def _memorization_field(nonmembers: str):
    # On the runs that train a next-token loss on texts (not GRPO / PPO).
    return field(
        default=False,
        metadata={
            "help": "at step 0, every diagnostics_every steps and at the end, score the mean "
            f"token loss of training texts (members) and of {nonmembers} (non-members), and a "
            "loss-threshold membership-inference attack between them (advantage = max TPR − "
            "FPR, AUC), to memorization.parquet and mem/* metrics"
        },
    )


def _memorization_examples_field():
    return field(
        default=16,
        metadata={"help": "texts scored on each side (members, non-members) when tracking"},
    )


@dataclass(frozen=True)
class SFTRunConfig(TrainConfig):
    """Supervised fine-tuning (next-token loss on texts) with trl.SFTTrainer."""

    dataset: str = field(
        default="demo-general",
        metadata={"help": TrainConfig.help("dataset") + "; SFT trains on whole texts"},
    )
    precision: str = _precision_field()
    track_memorization: bool = _memorization_field(
        "memorization_examples texts held back from training"
    )
    memorization_examples: int = _memorization_examples_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_precision(self.precision)


@dataclass(frozen=True)
class RLRunConfig(TrainConfig):
    """What GRPO and PPO share: a reward and sampled completions."""

    reward: str = field(
        default="brevity",
        metadata={
            "help": "a named reward (brevity, ends_with_period, contains_word:WORD, length:N, "
            "non_toxicity) or a sequence-classification model folder / hub id (scored on the "
            "completion's text with its own tokenizer, as reward_labels says)"
        },
    )
    reward_labels: str = field(
        default="auto",
        metadata={
            "help": "with a classifier reward: which logits make the reward. 'A-B' is "
            "logit[A] − logit[B] (ids or id2label names: '1-0', 'POSITIVE-NEGATIVE'; seed 000's "
            "distilbert-imdb reward is '1-0'), 'A' is logit[A]; 'auto': logit[0] for a "
            "one-label model, logit[1] − logit[0] for a two-label one"
        },
    )
    max_completion_length: int = field(
        default=24, metadata={"help": "longest sampled completion, in tokens"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    precision: str = _precision_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_precision(self.precision)


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
    """PPO with trl.experimental.ppo: policy, frozen reference, reward model, value head."""

    tolerance: float = field(
        default=1e-6,
        metadata={"help": "τ: a weight counts as changed when |Δ| > τ (seed 000's main_ppo: 1e-6)"},
    )
    kl_coef: float = field(
        default=0.2,
        metadata={
            "help": "KL penalty against the reference, fixed (TRL 0.8.6's init_kl_coef; its "
            "adaptive controller moves it by at most 0.2·batch/10000 per update)"
        },
    )
    num_ppo_epochs: int = field(
        default=1, metadata={"help": "PPO epochs over each rollout batch (seed 000: 4)"}
    )
    num_mini_batches: int = field(
        default=1,
        metadata={
            "help": "optimizer steps per PPO epoch: the rollout batch is split into this many "
            "mini-batches (must divide batch_size; seed 000: batch 16, mini-batch 4 → 4)"
        },
    )
    reward_scale: float = field(
        default=1.0,
        metadata={"help": "multiply every reward by this (seed 000's main_ppo: 0.02)"},
    )
    vf_coef: float = field(
        default=0.1,
        metadata={"help": "loss = policy loss + vf_coef · value loss (TRL 0.8.6 and 1.12: 0.1)"},
    )
    value_head: str = field(
        default="shared",
        metadata={
            "help": "shared: a linear value head on the policy's own last hidden state, so the "
            "value loss trains the policy's trunk too (TRL 0.8.6's "
            "AutoModelForCausalLMWithValueHead, seed 000); separate: a value model of its own "
            "(value_model, else a copy of the policy's trunk) that the policy never sees"
        },
    )
    value_model: str | None = field(
        default=None,
        metadata={
            "help": "with value_head separate: a value model folder / hub id (sequence "
            "classification); empty: a scalar head on a copy of the policy's backbone"
        },
    )
    ranks: bool = field(
        default=True,
        metadata={
            "help": "at every checkpoint log the classical, effective and stable rank of each "
            "2-D update ΔW (seed 000's main_ppo logs ranks with sparsity)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.value_head not in VALUE_HEADS:
            raise SubnetScopeError(
                f"value_head must be one of {', '.join(VALUE_HEADS)}, not '{self.value_head}'"
            )
        if int(self.num_mini_batches) < 1 or self.batch_size % int(self.num_mini_batches):
            raise SubnetScopeError(
                f"num_mini_batches ({self.num_mini_batches}) must be ≥ 1 and divide batch_size "
                f"({self.batch_size})"
            )
        if int(self.num_ppo_epochs) < 1:
            raise SubnetScopeError(f"num_ppo_epochs must be ≥ 1, not {self.num_ppo_epochs}")
        if self.value_model and self.value_head == "shared":
            raise SubnetScopeError(
                "value_model needs value_head: separate (a shared head lives on the policy)"
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
        metadata={
            "help": "ICA masking: empty (none), lesion (zero the chosen components' "
            "key neurons) or preserve (zero every other neuron)"
        },
    )
    ica_templates: str = field(
        default="demo", metadata={"help": "templates .json, or 'demo' for the demo's templates"}
    )
    ica_component_ids: tuple[int, ...] = field(
        default=(0,), metadata={"help": "components to lesion or preserve, e.g. 0,1"}
    )
    ica_space: str | None = field(
        default=None,
        metadata={
            "help": "neuron space the templates must be in: empty (the file's own), "
            "mlp_neurons (down projection input) or mlp_out (its output, seed 001)"
        },
    )
    anti_drift_row_param: bool = field(
        default=False,
        metadata={
            "help": "W_eff = frozen + row_mask * delta: masked neurons' weights cannot "
            "drift under Adam"
        },
    )
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
    track_memorization: bool = _memorization_field("the held-out task examples (eval_examples)")
    memorization_examples: int = _memorization_examples_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mask_mode in ("", "none", "null"):
            object.__setattr__(self, "mask_mode", None)
        if self.mask_mode is not None and self.mask_mode not in MASK_MODES:
            raise SubnetScopeError(
                f"mask_mode must be empty, lesion or preserve, not '{self.mask_mode}'"
            )
        if self.ica_space in ("", "auto", "none", "null"):
            object.__setattr__(self, "ica_space", None)
        if self.ica_space is not None and self.ica_space not in ("mlp_neurons", "mlp_out"):
            raise SubnetScopeError(
                f"ica_space must be empty, mlp_neurons or mlp_out, not '{self.ica_space}'"
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


DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
TARGETS_HELP = (
    "Linear layers to adapt: comma-separated module names (default: every attention and MLP "
    "projection of Llama-style models) or 'all-linear'"
)


def target_list(value: str) -> list[str] | str:
    """`target_modules` as PEFT takes it: 'all-linear' or a list of module names."""
    value = str(value).strip()
    if value == "all-linear":
        return value
    names = [v.strip() for v in value.strip("[] ").split(",") if v.strip()]
    if not names:
        raise SubnetScopeError("target_modules is empty: name modules like q_proj,v_proj")
    return names


def _targets(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    target_list(value)  # validates
    return str(value).strip()


@dataclass(frozen=True)
class LowRankConfig(TrainConfig):
    """What the LoRA, ReLoRA and rank-1 runs share: data, targets and rank tracking."""

    dataset: str = field(
        default="demo-general",
        metadata={
            "help": "texts ('demo-general' prose, 'demo-code' source, a .txt file, a hub id) or "
            "instruction records ('demo-arithmetic', a .jsonl/.json/.parquet file in any "
            "supported format)"
        },
    )
    template: str = field(
        default="auto",
        metadata={
            "help": "prompt template for instruction records: auto, chat, alpaca, chatml, basic"
        },
    )
    lora: bool = field(
        default=True, metadata={"help": "always on: these runs train low-rank updates"}
    )
    target_modules: str = field(default=DEFAULT_TARGETS, metadata={"help": TARGETS_HELP})
    rank_every: int = field(
        default=5,
        metadata={
            "help": "every k steps log the effective and stable rank and ‖ΔW‖_F of the "
            "accumulated update ΔW_total = W_now − W_start per target module"
        },
    )
    eval_texts: int = field(
        default=8,
        metadata={"help": "texts of the same source held out to score perplexity before/after"},
    )
    track_memorization: bool = _memorization_field("the held-out texts (eval_texts)")
    memorization_examples: int = _memorization_examples_field()
    track_subspaces: bool = field(
        default=True,
        metadata={
            "help": "at each rank record also compare the update made since the last record "
            "with the previous one and with the final update (principal angles of their top-8 "
            "column and row spaces: subspaces.parquet); costs one more SVD per module and "
            "record and, for dense runs, a copy of the target weights"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lora:
            raise SubnetScopeError("these runs always train low-rank updates: drop 'lora: false'")
        object.__setattr__(self, "target_modules", _targets(self.target_modules))
        for name in ("rank_every", "eval_texts"):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        if not float(self.lr) > 0:
            raise SubnetScopeError(f"lr must be > 0, not {self.lr}")


@dataclass(frozen=True)
class LoRARunConfig(LowRankConfig):
    """A task adapter: LoRA SFT with PEFT and trl.SFTTrainer, saved as a PEFT folder."""

    lora_rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    lora_alpha: float = field(
        default=16.0, metadata={"help": "LoRA alpha: the update is (alpha / r) · B @ A"}
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA path's input"})
    use_rslora: bool = field(
        default=False,
        metadata={"help": "rank-stabilized LoRA: scale alpha / sqrt(r) instead of alpha / r"},
    )
    steps: int = field(default=40, metadata={"help": "optimizer steps"})
    lr: float = field(default=2e-4, metadata={"help": "learning rate (LoRA's usual 2e-4)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= float(self.dropout) < 1:
            raise SubnetScopeError(f"dropout must be in [0, 1), not {self.dropout}")
        if not float(self.lora_alpha) > 0:
            raise SubnetScopeError(f"lora_alpha must be > 0, not {self.lora_alpha}")


FULL_RANK = ("all-other", "norms+embeddings", "norms", "none")
RANK1_METHODS = ("gradient-svd", "random-projection")
RANK1_OPTIMIZERS = ("adam", "sgd")
RANK1_SVD = ("randomized", "exact")


@dataclass(frozen=True)
class ReLoRAConfig(LowRankConfig):
    """ReLoRA (Lialin et al. 2023, arXiv 2307.05695): a full-rank warm start, then low-rank
    updates merged into the weights and restarted every k steps, so their sum grows to high
    rank."""

    lora_rank: int = field(default=8, metadata={"help": "rank r of each low-rank stage"})
    lora_alpha: float = field(
        default=16.0, metadata={"help": "alpha: each stage's update is (alpha / r) · B @ A"}
    )
    steps: int = field(default=40, metadata={"help": "optimizer steps"})
    lr: float = field(
        default=4e-4,
        metadata={
            "help": "peak learning rate of the ReLoRA stages. The paper trains ReLoRA at 2× "
            "the full-rank rate (the code's README at 250M: 5e-4 full-rank, 1e-3 ReLoRA); the "
            "default is 2× the LoRA run's 2e-4"
        },
    )
    reset_every: int = field(
        default=10,
        metadata={
            "help": "merge B @ A into the weights, re-initialize A (Kaiming), zero B and prune "
            "the optimizer state every k steps (the paper: 2000 on its pretraining runs; 10 "
            "makes several restarts visible in a demo-sized run)"
        },
    )
    optimizer_reset_prune: float = field(
        default=0.99,
        metadata={
            "help": "at each reset zero this fraction of the Adam moments (exp_avg, "
            "exp_avg_sq) of the low-rank parameters, keeping the largest by magnitude (the "
            "paper's partial reset: 0.99), and zero exp_avg wherever exp_avg_sq was zeroed "
            "(else Adam's next step there is m̂ / ε)"
        },
    )
    warmup_steps: int = field(
        default=4,
        metadata={"help": "initial linear warmup (the paper warms up for its first cycle)"},
    )
    restart_warmup_steps: int = field(
        default=2,
        metadata={
            "help": "linear re-warmup after each reset (the paper: 50 steps per 2000-step "
            "cycle; 2 per 10 here), then the cosine continues: the jagged schedule"
        },
    )
    min_lr_ratio: float = field(
        default=0.1, metadata={"help": "the cosine decays to this fraction of lr (the paper: 0.1)"}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warm_start_steps: int | None = field(
        default=None,
        metadata={
            "help": "full-rank warm start: the first k of `steps` train the target weights "
            "densely (AdamW) before the first ReLoRA stage; empty: a quarter of `steps` (the "
            "paper warms up 5K steps at 130M–350M and 10K of 30K at 1.3B); 0: none"
        },
    )
    warm_start_lr: float | None = field(
        default=None,
        metadata={
            "help": "peak learning rate of the warm start (linear warmup over warmup_steps, "
            "then constant); empty: lr / 2, the paper's full-rank rate (5e-4 vs ReLoRA's 1e-3)"
        },
    )
    full_rank: str = field(
        default="all-other",
        metadata={
            "help": "parameters outside the target layers that train at full rank (in the warm "
            "start and every ReLoRA stage): 'all-other' (the paper's code: every parameter that "
            "is not a wrapped weight — embeddings, norms, LM head, biases), 'norms+embeddings', "
            "'norms' or 'none'"
        },
    )

    def warm_start(self) -> int:
        """Full-rank warm-start steps: the option, or a quarter of the run when it is empty."""
        return int(self.steps) // 4 if self.warm_start_steps is None else int(self.warm_start_steps)

    def warm_lr(self) -> float:
        """The warm start's peak learning rate: the option, or lr / 2 when it is empty."""
        return float(self.lr) / 2 if self.warm_start_lr is None else float(self.warm_start_lr)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.full_rank not in FULL_RANK:
            raise SubnetScopeError(
                f"full_rank must be one of {', '.join(FULL_RANK)}, not {self.full_rank!r}"
            )
        if not 0 <= self.warm_start() < int(self.steps):
            raise SubnetScopeError(
                f"warm_start_steps ({self.warm_start()}) must be ≥ 0 and leave ReLoRA steps: "
                f"less than steps ({self.steps})"
            )
        if not self.warm_lr() > 0:
            raise SubnetScopeError(f"warm_start_lr must be > 0, not {self.warm_start_lr}")
        if int(self.reset_every) < 1:
            raise SubnetScopeError(f"reset_every must be ≥ 1, not {self.reset_every}")
        if not 0 <= float(self.optimizer_reset_prune) <= 1:
            raise SubnetScopeError(
                f"optimizer_reset_prune must be in [0, 1], not {self.optimizer_reset_prune}"
            )
        if int(self.warmup_steps) < 0 or int(self.restart_warmup_steps) < 0:
            raise SubnetScopeError("warmup_steps and restart_warmup_steps must be ≥ 0")
        if int(self.restart_warmup_steps) >= int(self.reset_every):
            raise SubnetScopeError(
                f"restart_warmup_steps ({self.restart_warmup_steps}) must be shorter than "
                f"reset_every ({self.reset_every})"
            )
        if not 0 <= float(self.min_lr_ratio) <= 1:
            raise SubnetScopeError(f"min_lr_ratio must be in [0, 1], not {self.min_lr_ratio}")
        if not float(self.lora_alpha) > 0:
            raise SubnetScopeError(f"lora_alpha must be > 0, not {self.lora_alpha}")


@dataclass(frozen=True)
class Rank1Config(LowRankConfig):
    """Dynamic rank-1 merging (seed 003): every step changes each target weight by a rank-1
    update. 'gradient-svd' applies the best rank-1 approximation of the step's own update;
    'random-projection' trains a fresh rank-1 LoRA (random A, zero B) and merges it."""

    lora_rank: int = field(default=1, metadata={"help": "always 1 in this run"})
    steps: int = field(default=40, metadata={"help": "optimizer steps"})
    lr: float = field(default=5e-4, metadata={"help": "learning rate"})
    method: str = field(
        default="gradient-svd",
        metadata={
            "help": "'gradient-svd': each step W ← W − lr · σ₁u₁v₁ᵀ of the step's dense update "
            "(the gradient with sgd, Adam's step with adam), the best rank-1 approximation "
            "(Eckart–Young); 'random-projection': a fresh rank-1 LoRA with random A and zero B "
            "trained for merge_every steps and merged — its update is the gradient projected "
            "on the random A (sign-quantized by a fresh Adam's first step)"
        },
    )
    optimizer: str = field(
        default="adam",
        metadata={
            "help": "'adam': with gradient-svd, Adam moments on each target weight's dense "
            "gradient (2 floats per target weight, like full-rank Adam), rank-1 truncation of "
            "Adam's step; with random-projection, a fresh Adam on the LoRA factors. 'sgd': "
            "plain gradient steps"
        },
    )
    svd: str = field(
        default="randomized",
        metadata={
            "help": "gradient-svd's top singular triplet: 'exact' (torch.linalg.svd) or "
            "'randomized' (subspace iteration on 8 vectors until v₁ settles, else exact; on "
            "the demo model's gradients the rank-1 update within 1e-5 of exact, 7–10× faster "
            "on CPU)"
        },
    )
    merge_every: int = field(
        default=1,
        metadata={
            "help": "random-projection only: merge and start a fresh rank-1 LoRA every k steps "
            "(gradient-svd applies every step's update at once: 1)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.lora_rank) != 1:
            raise SubnetScopeError(f"a rank-1 run has lora_rank 1, not {self.lora_rank}")
        if int(self.merge_every) < 1:
            raise SubnetScopeError(f"merge_every must be ≥ 1, not {self.merge_every}")
        for name, allowed in (
            ("method", RANK1_METHODS),
            ("optimizer", RANK1_OPTIMIZERS),
            ("svd", RANK1_SVD),
        ):
            if getattr(self, name) not in allowed:
                raise SubnetScopeError(
                    f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}"
                )
        if self.method == "gradient-svd" and int(self.merge_every) != 1:
            raise SubnetScopeError(
                f"merge_every {self.merge_every} applies to method random-projection only: "
                "gradient-svd applies each step's rank-1 update at once (merge_every 1)"
            )


CONFIGS.update({"lora": LoRARunConfig, "relora": ReLoRAConfig, "rank1": Rank1Config})


FULL_TRAINABLE = ("all", "targets")


@dataclass(frozen=True)
class FullConfig(LowRankConfig):
    """Full fine-tuning on the same data, steps and target modules as the low-rank runs (seed
    003's baseline): every weight (or only the target modules' weights) trains at full rank with
    AdamW at a constant learning rate; the target modules' ΔW is tracked the same way."""

    lora: bool = field(
        default=True, metadata={"help": "not used: full fine-tuning trains at full rank"}
    )
    steps: int = field(default=40, metadata={"help": "optimizer steps"})
    lr: float = field(default=2e-5, metadata={"help": "learning rate (constant)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    trainable: str = field(
        default="all",
        metadata={
            "help": "'all': every parameter trains (full fine-tuning); 'targets': only the "
            "target modules' weights, at full rank (the low-rank runs' parameters without the "
            "rank limit)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trainable not in FULL_TRAINABLE:
            raise SubnetScopeError(
                f"trainable must be one of {', '.join(FULL_TRAINABLE)}, not {self.trainable!r}"
            )
        if float(self.weight_decay) < 0:
            raise SubnetScopeError(f"weight_decay must be ≥ 0, not {self.weight_decay}")


CONFIGS["full"] = FullConfig
