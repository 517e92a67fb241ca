"""What loading a model will need, known from its config before any weight is read, and whether
this machine has it.

`plan_load` builds the model on torch's meta device (shapes only, no memory) to count its
parameters exactly as loading will create them (tied weights once), and adds what one forward of
`tokens` tokens needs at its peak: the widest layer's activations and the logits (float32). It is
an estimate of the floor, not of everything a view may do: LRP keeps every layer's activations
for its backward, training keeps optimizer state. `check_fits` refuses, in one sentence, a load
whose plan exceeds the memory free on the device.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from engine.errors import SubnetScopeError

GB = 1024**3
FORWARD_TOKENS = 512  # the forward the plan includes: one 512-token text
_MARGIN = 0.9  # of the free memory a plan may take


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a load needs, from the config alone."""

    source: str
    model_type: str
    parameters: int
    dtype: str  # "bfloat16", "float32", …
    weight_bytes: int
    forward_bytes: int  # peak activations + float32 logits of one FORWARD_TOKENS forward
    device: str

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.forward_bytes

    def describe(self) -> str:
        return (
            f"{self.parameters / 1e6:,.0f}M parameters in {self.dtype}: "
            f"{self.weight_bytes / GB:.2f} GB of weights + {self.forward_bytes / GB:.2f} GB "
            f"for a {FORWARD_TOKENS}-token forward"
        )

    def fits(self, free: int) -> bool:
        """Whether the plan takes at most _MARGIN of `free` bytes."""
        return self.total_bytes <= _MARGIN * free

    def to_json(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes}


def count_parameters(config: object) -> int:
    """Parameters of the model `config` describes, counted on the meta device (no memory)."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    encoder = getattr(config, "model_type", "") in ("bert", "roberta")
    cls = AutoModelForMaskedLM if encoder else AutoModelForCausalLM
    with torch.device("meta"):
        model = cls.from_config(config)
    return sum(p.numel() for p in model.parameters())


def forward_bytes(config: object, tokens: int = FORWARD_TOKENS) -> int:
    """Peak of one forward: a few hidden-state copies and the widest MLP activations (in the
    model's dtype, counted as float32 to stay on the safe side) and float32 logits."""
    text = getattr(config, "text_config", None) or config
    hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "n_embd", 0) or 0)
    width = getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None)
    width = max(width) if isinstance(width, (list, tuple)) else int(width or 4 * hidden)
    vocab = int(getattr(text, "vocab_size", 0) or 0)
    return tokens * (4 * hidden + 2 * width + vocab) * 4


def plan_for_config(
    config: object, dtype: torch.dtype, device: torch.device, source: str = "config"
) -> MemoryPlan:
    parameters = count_parameters(config)
    return MemoryPlan(
        source=source,
        model_type=str(getattr(config, "model_type", "")),
        parameters=parameters,
        dtype=str(dtype).removeprefix("torch."),
        weight_bytes=parameters * torch.empty((), dtype=dtype).element_size(),
        forward_bytes=forward_bytes(config),
        device=device.type,
    )


def free_bytes(device: torch.device | str) -> int:
    """Memory free for a new model on `device`: the GPUs' free memory (all of them: a model too
    big for one spreads with device_map="auto"), else the system's available RAM."""
    if torch.device(device).type == "cuda":
        return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    try:  # Linux: what can be had without swapping, page cache included
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_fits(plan: MemoryPlan, free: int | None = None) -> None:
    """One sentence of refusal when `plan` needs more than the device has free."""
    free = free_bytes(plan.device) if free is None else free
    if not plan.fits(free):
        raise SubnetScopeError(
            f"'{plan.source}' would not fit: {plan.describe()} = {plan.total_bytes / GB:.1f} GB, "
            f"and {plan.device.upper()} has {free / GB:.1f} GB free; choose a smaller dtype "
            "(bf16 halves fp32) or a machine with more memory"
        )
