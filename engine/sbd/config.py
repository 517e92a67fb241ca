"""Set Block Decoding's options, without torch: its job kinds, CLI and page read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import SubnetScopeError
from engine.params import ParamsConfig
from engine.training.config import (
    DEFAULT_TARGETS,
    TARGETS_HELP,
    TrainConfig,
    _memorization_examples_field,
    _memorization_field,
    _targets,
)

TRAIN_KIND = "sbd.train"
EVAL_KIND = "sbd.evaluate"
MODEL_DIR = "model"  # under the job's result folder: the model and its tokenizer (with the mask)
RUN_JSON = "run.json"
EVAL_FILE = "evaluation.parquet"  # one row per decoding method × threshold
SAMPLES_FILE = "samples.parquet"  # one row per example × method × threshold
PAPER_THRESHOLDS = (0.1, 0.35, 0.6)  # γ the paper uses: reasoning 0.1 / 0.35, chat 0.35 / 0.6


def block_range(value: object) -> tuple[int, int]:
    """(low, high) block sizes from "2-16", "4" or a pair; each training step draws one k."""
    try:
        if isinstance(value, str):
            parts = [int(p) for p in value.replace(" ", "").split("-")]
        elif isinstance(value, int) and not isinstance(value, bool):
            parts = [value]
        else:
            parts = [int(p) for p in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] < 2 or parts[1] < parts[0]:
        raise SubnetScopeError(
            f"block_sizes is a range of whole numbers ≥ 2 such as '2-16' or '8', not {value!r}"
        )
    return parts[0], parts[1]


def thresholds_of(value: object) -> tuple[float, ...]:
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    try:
        out = tuple(float(v) for v in items)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        out = ()
    if not out or not all(v >= 0 for v in out):
        raise SubnetScopeError(
            f"thresholds are entropy bounds γ ≥ 0 in nats such as '0.1 0.35 0.6', not {value!r}"
        )
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class SBDConfig(TrainConfig):
    """An SBD fine-tune (arXiv 2509.04185 eq. 14): next-token loss on the clean sequence plus the
    masked-token loss on a corrupted copy cut into blocks of k, one mean cross-entropy over both;
    then SBD and autoregressive decoding of the result compared on held-out examples."""

    dataset: str = field(
        default="demo-arithmetic",
        metadata={
            "help": "instruction records ('demo-arithmetic', a .jsonl/.json/.parquet file) or "
            "texts ('demo-general', a .txt file, a hub id)"
        },
    )
    template: str = field(
        default="auto",
        metadata={"help": "prompt template for instruction records: auto, chat, alpaca, basic"},
    )
    lora: bool = field(
        default=False,
        metadata={
            "help": "train a LoRA adapter (plus the mask token's embedding row, PEFT's "
            "trainable tokens) and merge it; off: every weight trains"
        },
    )
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (with lora)"})
    target_modules: str = field(default=DEFAULT_TARGETS, metadata={"help": TARGETS_HELP})
    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "sequences per step"})
    lr: float = field(default=5e-5, metadata={"help": "AdamW learning rate (linear warmup)"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warmup steps, then constant"})
    block_sizes: str = field(
        default="2-16",
        metadata={
            "help": "each step draws one block size k uniformly from this range (the paper's "
            "2-16); the corrupted copy is cut into blocks of k"
        },
    )
    completion_only: bool = field(
        default=True,
        metadata={
            "help": "for instruction records: mask and score the response tokens only, in both "
            "terms (TRL's SFT default for prompt-completion data; the paper trains on whole "
            "sequences); off: every token"
        },
    )
    checkpoint_every: int = field(
        default=0, metadata={"help": "save checkpoint-<step>/ every k steps (0: the final only)"}
    )
    eval_texts: int = field(
        default=40,
        metadata={"help": "records (or texts) held out: perplexity and the decoding evaluation"},
    )
    thresholds: tuple[float, ...] = field(
        default=(0.0, 0.1, 0.35, 0.6, 1.0),
        metadata={"help": "entropy bounds γ (nats) the finished model is decoded at"},
    )
    eval_block_size: int = field(default=16, metadata={"help": "block size k when decoding"})
    eval_examples: int = field(
        default=40, metadata={"help": "held-out examples decoded per threshold (0: skip)"}
    )
    max_new_tokens: int = field(default=32, metadata={"help": "longest generation, in tokens"})
    track_memorization: bool = _memorization_field("the held-out texts (eval_texts)")
    memorization_examples: int = _memorization_examples_field()

    def __post_init__(self) -> None:
        # TrainConfig's own checks, but checkpoint_every may be 0 here (the final model only).
        for name in ("lora_rank", "memorization_examples"):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        if int(self.diagnostics_every) < 0:
            raise SubnetScopeError(
                f"diagnostics_every must be ≥ 0 (0: off), not {self.diagnostics_every}"
            )
        block_range(self.block_sizes)
        object.__setattr__(self, "thresholds", thresholds_of(self.thresholds))
        object.__setattr__(self, "target_modules", _targets(self.target_modules))
        for name in ("steps", "batch_size", "eval_block_size", "max_new_tokens", "eval_texts"):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        for name in ("warmup_steps", "checkpoint_every", "eval_examples"):
            if int(getattr(self, name)) < 0:
                raise SubnetScopeError(f"{name} must be ≥ 0, not {getattr(self, name)}")
        if not float(self.lr) > 0:
            raise SubnetScopeError(f"lr must be > 0, not {self.lr}")
        if self.max_length < 8:
            raise SubnetScopeError(f"max_length must be ≥ 8 tokens, not {self.max_length}")

    def to_params(self) -> dict:
        params = super().to_params()
        params["thresholds"] = list(self.thresholds)
        return params


# The demo part: a full fine-tune of the demo model on two-digit sums in the short basic template
# (every key, as the job stores it: engine/demo/registry.py compares them all).
DEMO_SBD: dict = SBDConfig(
    model="demo",
    dataset="demo-arithmetic",
    template="basic",
    steps=300,
    batch_size=8,
    lr=1e-4,
    block_sizes="2-16",
    max_length=48,
    thresholds=(0.0, 0.1, 0.35, 0.6, 1.0, 2.0),
    eval_examples=40,
    eval_texts=40,
).to_params()


# The `sbd.evaluate` job (engine/sbd/evaluate.py): a finished fine-tune decoded again, at other
# thresholds or on more held-out examples than its own end-of-training evaluation.
EVAL_SUMMARY = "evaluation.json"  # the trade-off in one sentence, with the table's rows
HELDOUT_FILE = "heldout.json"  # the examples the end-of-training evaluation decoded


def _trained_default(name: str) -> Any:
    return SBDConfig.__dataclass_fields__[name].default


@dataclass(frozen=True)
class EvalConfig(ParamsConfig):
    """Options of the `sbd.evaluate` job: which fine-tune, at which thresholds, on how many
    held-out examples."""

    run: str = field(
        default="demo",
        metadata={
            "help": "an sbd.train job id (a unique prefix is enough), or 'demo': the demo part's "
            "finished fine-tune"
        },
    )
    thresholds: tuple[float, ...] = field(
        default=_trained_default("thresholds"),
        metadata={
            "help": "entropy bounds γ (nats): a pass reveals the most masked slots whose "
            "entropies, all but the largest, sum to ≤ γ"
        },
    )
    block_size: int = field(
        default=_trained_default("eval_block_size"), metadata={"help": "k: slots per block"}
    )
    eval_examples: int = field(
        default=100,
        metadata={
            "help": "held-out examples: for a demo-arithmetic run, fresh sums none of whose "
            "a + b pairs the training data holds; otherwise the run's own held-out records"
        },
    )
    max_new_tokens: int = field(
        default=_trained_default("max_new_tokens"), metadata={"help": "longest generation"}
    )
    ntp_first: bool = field(
        default=False,
        metadata={"help": "each block's first slot from the next-token logit (not in the paper)"},
    )
    seed: int = field(default=1, metadata={"help": "seed of the held-out draw"})

    def __post_init__(self) -> None:
        if not str(self.run).strip():
            raise SubnetScopeError("name the run to evaluate: an sbd.train job id or 'demo'")
        object.__setattr__(self, "thresholds", thresholds_of(self.thresholds))
        for name in ("block_size", "eval_examples", "max_new_tokens"):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")

    def to_params(self) -> dict[str, Any]:
        return {**asdict(self), "thresholds": list(self.thresholds)}
