"""Options of a LoRA-generator training run (light: no torch), with each field's help text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import SubnetScopeError
from engine.params import ParamsConfig

GENERATOR_KIND = "lora.generator_train"
TEACHERS_KIND = "train.lora_teachers"
# Loss modes (engine/lora/generator/losses.py LOSS_MODES; kept here so the config stays light).
MODES = ("weight", "delta_w", "delta", "multitask", "delta_guided")
ARCHS = ("mlp", "hyperconv")
DELTA_KINDS = ("nmse", "cos")
ENCODER_CHOICES = ("auto", "minilm", "base")
# The demo's parts (engine/demo/registry.py): teachers on every demo task, then generators trained
# on all but the held-out task. Kept here (light) so the generator's catalog finds the demo's first.
DEMO_TEACHERS: dict[str, Any] = {
    "model": "demo",
    "tasks": "all",
    "steps": 40,
    "checkpoint_every": 5,
    "lora_rank": 4,
    "lora_alpha": 8.0,
    "target_modules": "q_proj,v_proj",
    "template": "alpaca",
    # One probe per task: the delta loss runs the base model over every probe for every sample.
    "probe_prompts": 1,
    "seed": 0,
}
# Both demo generators: DnD's decoder (better than mlp on the demo: README), the tail of each
# trajectory (steps 20–40), and the computed δ every 4th step (it costs the base's forward and
# backward over every probe for every sample).
_DEMO_GENERATOR = {"teachers": "demo", "held_out": "sub", "arch": "hyperconv", "from_step": 20}
DEMO_GENERATOR: dict[str, Any] = {**_DEMO_GENERATOR, "loss": "multitask", "delta_every": 4}
DEMO_GENERATOR_WEIGHT: dict[str, Any] = {**_DEMO_GENERATOR, "loss": "weight"}

# seed 004's ablation: 3 trials × these configurations (LLGBM's ablations.py adds its multitask
# weightings; ours also runs the gauge-invariant ΔW term and the delta-guided head).
ABLATION_CONFIGS: dict[str, dict[str, Any]] = {
    "weight_only": {"loss": "weight"},
    "delta_w_only": {"loss": "delta_w"},
    "delta_only": {"loss": "delta"},
    "multitask": {"loss": "multitask", "lambda_w": 1.0, "lambda_d": 0.1},
    "multitask2": {"loss": "multitask", "lambda_w": 0.5, "lambda_d": 0.5},
    "delta_guided": {"loss": "delta_guided", "delta_every": 4},
}


@dataclass(frozen=True)
class GeneratorTrainConfig(ParamsConfig):
    """A generator from prompt batches to LoRA factors, trained on a teachers run's checkpoints."""

    teachers: str = field(
        default="demo",
        metadata={
            "help": "the teachers: a train.lora_teachers job id, its result folder, or 'demo' "
            "(the demo's teachers)"
        },
    )
    held_out: str = field(
        default="sub",
        metadata={
            "help": "tasks (comma list) kept out of training: the generator never sees their "
            "checkpoints; evaluation scores it on them"
        },
    )
    from_step: int = field(
        default=0,
        metadata={
            "help": "train on the checkpoints saved at or after this step (DnD trains on the tail "
            "of each trajectory: its checkpoints come after pre-training); 0 takes them all"
        },
    )
    loss: str = field(
        default="multitask",
        metadata={
            "help": "weight (MSE on A, B), delta_w (MSE on s·B·A, gauge-invariant), delta (δ "
            "only), multitask (λ_w·L_w + λ_d·L_δ), delta_guided (a δ head guides the generator)"
        },
    )
    weight_term: str = field(
        default="weight",
        metadata={"help": "the weight term of multitask: weight (A, B) or delta_w (s·B·A)"},
    )
    lambda_w: float = field(default=1.0, metadata={"help": "λ_w: weight of the weight term"})
    lambda_d: float = field(default=0.1, metadata={"help": "λ_d: weight of the delta term"})
    delta_kind: str = field(
        default="nmse",
        metadata={"help": "delta loss: nmse (MSE of unit vectors) or cos (1 − cosine)"},
    )
    arch: str = field(
        default="hyperconv",
        metadata={
            "help": "mlp (pooled prompts → per-module heads) or hyperconv (DnD's cascaded "
            "hyper-convolutional decoder)"
        },
    )
    encoder: str = field(
        default="auto",
        metadata={
            "help": "prompt encoder: minilm (all-MiniLM-L6-v2, 384-d), base (the base model's "
            "mean hidden state), auto (minilm where installed)"
        },
    )
    hidden: int = field(default=256, metadata={"help": "the generator's hidden width"})
    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=4, metadata={"help": "teacher checkpoints per step"})
    n_prompts: int = field(
        default=8, metadata={"help": "N: prompts drawn per condition (a fresh batch each time)"}
    )
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    delta_every: int = field(
        default=4,
        metadata={
            "help": "compute the delta term every k steps (it needs forward passes of the base "
            "model; the weight term runs every step)"
        },
    )
    eval_draws: int = field(
        default=3,
        metadata={"help": "evaluation: adapters per task, each from a fresh batch of N prompts"},
    )
    seed: int = field(default=0, metadata={"help": "random seed (init, prompt draws, order)"})
    dtype: str = field(
        default="auto", metadata={"help": "the base model's precision: auto, bf16, fp16, fp32"}
    )

    def __post_init__(self) -> None:
        checks = {"loss": MODES, "arch": ARCHS, "delta_kind": DELTA_KINDS}
        checks |= {"encoder": ENCODER_CHOICES, "weight_term": ("weight", "delta_w")}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise SubnetScopeError(
                    f"{name} must be one of {', '.join(allowed)}, not '{getattr(self, name)}'"
                )
        for name in ("hidden", "steps", "batch_size", "n_prompts", "delta_every", "eval_draws"):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        if not float(self.lr) > 0:
            raise SubnetScopeError(f"lr must be > 0, not {self.lr}")
        if int(self.from_step) < 0:
            raise SubnetScopeError(f"from_step must be ≥ 0, not {self.from_step}")
        for name in ("lambda_w", "lambda_d", "weight_decay"):
            if not float(getattr(self, name)) >= 0:
                raise SubnetScopeError(f"{name} must be ≥ 0, not {getattr(self, name)}")

    @property
    def held_out_tasks(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.held_out.split(",") if t.strip())

    @property
    def uses_delta(self) -> bool:
        return self.loss in ("delta", "multitask", "delta_guided")

    @property
    def uses_weights(self) -> bool:
        return self.loss in ("weight", "delta_w", "multitask")
