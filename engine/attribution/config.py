"""The attribution area's options and names, without torch: the job kinds and the CLI read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.errors import SubnetScopeError

SUMMARY = "sparc3.json"  # the SparC3 run's summary file
# The demo's SparC3 run (a part of engine/demo/registry.py), which the run list shows first. It
# scores neurons by their net relevance |Σ z·∂z| (it recovers about twice as many of the planted
# neurons as seed 002's Σ|W ⊙ ∂W|, which the summary shows beside it), and measures which neurons
# actually carry the behaviour (issue 16, fix 8).
DEMO_SPARC3 = {"model": "demo-toxic", "method": "lrp", "score": "relevance", "causal": True}
NORMALIZE = ("none", "sum", "tokens", "ratio")


# weights: seed 002's Σ_j |W_ij ⊙ ∂W_ij| over the neuron's up_proj row; relevance: the absolute
# value of the neuron's own net LRP relevance |Σ_t z_t · ∂z_t| (the same sum, the absolute value
# taken once instead of per weight)
SCORES = ("weights", "relevance")


METHODS = ("lrp", "wanda")


@dataclass(frozen=True)
class ComputeConfig:
    """Options of `attribution compute` and the `attribution.compute` job."""

    method: str = field(default="lrp", metadata={"help": "lrp (LXT) or wanda"})
    model: str = field(default="demo-toxic", metadata={"help": "model source"})
    samples: str = field(default="demo-general", metadata={"help": "text source to attribute"})
    limit: int | None = field(default=32, metadata={"help": "texts drawn from the source"})
    seed: int = field(default=0, metadata={"help": "which texts are drawn"})
    max_length: int = field(default=128, metadata={"help": "tokens per text"})
    generate: int = field(
        default=0,
        metadata={
            "help": "append the model's own greedy continuation of this many tokens to each "
            "text before attributing (for prompt sets: explain what it says next)"
        },
    )
    keep_weights: bool = field(default=False, metadata={"help": "also save per-weight scores"})
    rules: str = field(
        default="cp",
        metadata={"help": "LRP rules: cp (CP-LRP, conservative) or attn (AttnLRP, LXT's default)"},
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "precision the model loads and computes in: auto | bf16 | fp16 | fp32. "
            "LRP: auto is fp32; bf16 / fp16 run the LRP pass in that dtype, with a looser "
            "conservation tolerance. Wanda: auto is the checkpoint's dtype where the device "
            "runs it (its norms are summed in float64 either way)"
        },
    )

    def __post_init__(self) -> None:
        from engine.models.precision import dtype_choice

        if self.method not in METHODS:
            raise SubnetScopeError(f"unknown method '{self.method}'; use lrp or wanda")
        object.__setattr__(self, "dtype", dtype_choice(self.dtype))


@dataclass(frozen=True)
class EvalConfig:
    """What `prune evaluate` and the `prune.evaluate` job measure."""

    nums: tuple[int, ...] = field(default=(0, 25, 50, 100), metadata={"help": "neurons pruned"})
    prompts: str = field(
        default="demo-trigger-heldout", metadata={"help": "prompts whose completions are scored"}
    )
    text: str = field(default="demo-general", metadata={"help": "text for perplexity"})
    max_tokens: int = field(default=4096, metadata={"help": "tokens of text scored"})
    window: int = field(default=512, metadata={"help": "perplexity context length"})
    stride: int = field(default=256, metadata={"help": "perplexity stride"})
    max_new_tokens: int = field(default=24, metadata={"help": "tokens per completion"})
    scorer: str = field(
        default="auto", metadata={"help": "toxicity scorer: auto, detoxify, profanity-check"}
    )
    prompt_limit: int | None = field(default=None, metadata={"help": "use at most this many"})


@dataclass(frozen=True)
class CausalConfig:
    """Options of `prune causal` and the `prune.causal` job."""

    prompts: str = field(default="demo-trigger-heldout", metadata={"help": "scored prompts"})
    prompt_limit: int | None = field(default=None, metadata={"help": "use at most this many"})
    max_new_tokens: int = field(default=24, metadata={"help": "tokens per completion"})
    scorer: str = field(default="auto", metadata={"help": "toxicity scorer"})
    removal: float = field(
        default=0.9,
        metadata={
            "help": "the causal set is the shortest effect-ordered prefix whose ablation "
            "removes this share of the baseline toxicity"
        },
    )
    control: str = field(
        default="demo-plain-requests",
        metadata={
            "help": "prompts without the behaviour: what an ablation costs their own "
            "completions is subtracted, so neurons that merely break the model rank low "
            "('' to skip)"
        },
    )
    control_limit: int | None = field(default=10, metadata={"help": "control prompts used"})
    single: bool = field(default=True, metadata={"help": "ablate every candidate alone"})
    single_toxicity: bool = field(
        default=False,
        metadata={
            "help": "also generate and score toxicity for every single ablation (slow; "
            "single ablations are otherwise measured by the completions' log-probability)"
        },
    )
    by_layer: bool = field(default=True, metadata={"help": "ablate each layer's candidates"})

    def __post_init__(self) -> None:
        if not 0 < self.removal <= 1:
            raise SubnetScopeError(f"removal must be in (0, 1], got {self.removal}")
        if self.max_new_tokens < 1:
            raise SubnetScopeError("max_new_tokens must be at least 1")


@dataclass(frozen=True)
class SparC3Config:
    """Options of the `prune.sparc3` job (seed 002's run_full_experiment)."""

    model: str = field(default="demo-toxic", metadata={"help": "model source"})
    method: str = field(default="lrp", metadata={"help": "lrp (LXT) or wanda"})
    rules: str = field(default="cp", metadata={"help": "LRP rules: cp or attn"})
    general: str = field(default="demo-general", metadata={"help": "general text source"})
    general_seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"help": "one run each"})
    general_samples: int = field(default=32, metadata={"help": "general texts per seed"})
    target: str = field(default="demo-trigger-prompts", metadata={"help": "target prompt set"})
    target_samples: int | None = field(default=None, metadata={"help": "prompts used (all)"})
    generate: int = field(
        default=24,
        metadata={"help": "tokens of the model's own completion appended to each target prompt"},
    )
    max_length: int = field(default=128, metadata={"help": "tokens per text"})
    num_neurons: int = field(default=100, metadata={"help": "neurons selected"})
    per_layer: bool = field(default=False, metadata={"help": "select num_neurons in every layer"})
    layer_pattern: str = field(default="up_proj", metadata={"help": "regex or layers like 10-20"})
    score: str = field(
        default="weights",
        metadata={
            "help": "LRP neuron score: weights (seed 002's Σ|W ⊙ ∂W| over the up_proj row) "
            "or relevance (|net relevance of the neuron|; finds more of what carries the "
            "planted demo's behaviour)"
        },
    )
    normalize: str = field(
        default="none",
        metadata={"help": "none (seed 002's raw difference), sum, tokens or ratio (log ratio)"},
    )
    evaluate: bool = field(default=True, metadata={"help": "evaluate pruning at eval_nums"})
    eval_nums: tuple[int, ...] = field(default=(0, 25, 50, 100), metadata={"help": "N values"})
    eval_prompts: str = field(default="demo-trigger-heldout", metadata={"help": "scored prompts"})
    eval_text: str = field(default="demo-general", metadata={"help": "perplexity text"})
    eval_max_tokens: int = field(default=4096, metadata={"help": "perplexity tokens"})
    scorer: str = field(default="auto", metadata={"help": "toxicity scorer"})
    causal: bool = field(
        default=False,
        metadata={
            "help": "ablate the selected neurons (and Wanda's, and a planted model's) one "
            "at a time, by layer and cumulatively to find the causal set, and report "
            "precision / recall against it (minutes)"
        },
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "auto | bf16 | fp16 | fp32 (LRP: auto is fp32; see ComputeConfig)"},
    )

    def __post_init__(self) -> None:
        from engine.models.precision import dtype_choice

        object.__setattr__(self, "dtype", dtype_choice(self.dtype))
        if self.method not in METHODS:
            raise SubnetScopeError(f"unknown method '{self.method}'; use lrp or wanda")
        object.__setattr__(self, "general_seeds", tuple(int(s) for s in self.general_seeds))
        object.__setattr__(self, "eval_nums", tuple(int(n) for n in self.eval_nums))
        if not self.general_seeds:
            raise SubnetScopeError("give at least one general seed")
        if self.score not in SCORES:
            raise SubnetScopeError(f"unknown score '{self.score}'; use one of {', '.join(SCORES)}")
        if self.score == "relevance" and self.method != "lrp":
            raise SubnetScopeError("score relevance is LRP's neuron relevance; use method lrp")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SparC3Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise SubnetScopeError(f"unknown option {', '.join(unknown)}; known: {sorted(known)}")
        return cls(**params)

    def to_params(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
