"""`TeachersConfig`: the options of `train.lora_teachers` (light: no torch at import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.data.lora_tasks import task_names
from engine.errors import SubnetScopeError
from engine.models.precision import dtype_choice
from engine.params import ParamsConfig
from engine.training.config import TARGETS_HELP, _targets


@dataclass(frozen=True)
class TeachersConfig(ParamsConfig):
    """Teacher LoRA adapters for the generator (seed 004): one trajectory per task, every task
    from the same LoRA init, a PEFT checkpoint every k steps with the prompts it was trained on."""

    model: str = field(
        default="demo",
        metadata={"help": "base model: 'demo', a local folder or a hub id"},
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "the base weights' dtype: auto (fp32 on a CPU; bf16 on a CUDA card with bf16), "
            "fp32 or bf16; the LoRA factors train in fp32 (fp16 is refused)"
        },
    )
    tasks: str = field(
        default="all",
        metadata={"help": "teacher tasks: 'all' or a comma list (engine/data/lora_tasks.py)"},
    )
    steps: int = field(default=40, metadata={"help": "optimizer steps per task"})
    checkpoint_every: int = field(
        default=5,
        metadata={"help": "save a checkpoint every k steps (the last one after `steps`)"},
    )
    lora_rank: int = field(default=4, metadata={"help": "LoRA rank r"})
    lora_alpha: float = field(
        default=8.0, metadata={"help": "LoRA alpha: the update is (alpha / r) · B @ A"}
    )
    target_modules: str = field(default="q_proj,v_proj", metadata={"help": TARGETS_HELP})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    batch_size: int = field(default=4, metadata={"help": "examples per step"})
    max_length: int = field(
        default=64, metadata={"help": "longest training / held-out text, in tokens"}
    )
    train_examples: int = field(
        default=200,
        metadata={"help": "training examples per task (fewer where a task has fewer)"},
    )
    heldout_examples: int = field(
        default=16, metadata={"help": "held-out examples per task that score each checkpoint"}
    )
    probe_prompts: int = field(
        default=4,
        metadata={
            "help": "probe prompts per task for the delta activations; the probe set holds "
            "every task's (LLGBM: probes from every task)"
        },
    )
    template: str = field(
        default="auto",
        metadata={"help": "prompt template: auto, chat, alpaca, chatml, basic"},
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the examples, their order and the LoRA init"}
    )
    report_to: str = field(
        default="tensorboard",
        metadata={
            "help": "'tensorboard': the job's metrics also go to <job>/tensorboard/; 'none': off"
        },
    )

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "checkpoint_every",
            "lora_rank",
            "batch_size",
            "max_length",
            "train_examples",
            "heldout_examples",
            "probe_prompts",
        ):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        for name in ("lr", "lora_alpha"):
            if not float(getattr(self, name)) > 0:
                raise SubnetScopeError(f"{name} must be > 0, not {getattr(self, name)}")
        dtype = dtype_choice(self.dtype)
        if dtype == "fp16":
            raise SubnetScopeError("train.lora_teachers trains in fp32 or bf16, not fp16")
        object.__setattr__(self, "dtype", dtype)
        tasks = self.tasks
        if isinstance(tasks, list | tuple):
            tasks = ",".join(str(t) for t in tasks)
        task_names(tasks)  # validates
        object.__setattr__(self, "tasks", str(tasks).strip())
        object.__setattr__(self, "target_modules", _targets(self.target_modules))

    def task_list(self) -> list[str]:
        """The tasks to train, in LORA_TASKS order."""
        return task_names(self.tasks)
