"""Which dtype a model is loaded in: `auto | bf16 | fp16 | fp32`, decided before any weight is read.

`auto` is the checkpoint's own dtype where the device computes in it at speed, else float32:
- CUDA: bf16 where the card supports it, fp16, fp32 as stored;
- CPU: fp32, and bf16 (torch's CPU kernels run it; measured here with avx512_bf16, a [256, 576] ×
  [576, 1536] matmul: 2.4 ms in bf16 against 6.0 ms in fp32), but not fp16 (24 ms: 4× slower than
  fp32), which loads as fp32;
- MPS: fp16 and fp32; bf16 loads as fp32.
A checkpoint that names no dtype (a GGUF, dequantized on load) is float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import SubnetScopeError

if TYPE_CHECKING:
    import torch

# Light at import (the CLI's --help lists the choices without loading torch).
DTYPE_CHOICES: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32")
_ALIASES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
}


def dtype_choice(value: str | torch.dtype | None) -> str:
    """The choice a value names (None → auto); one clear error for anything else."""
    if value is None:
        return "auto"
    if not isinstance(value, str):  # a torch.dtype
        for name, dtype in _named().items():
            if dtype == value:
                return name
        raise SubnetScopeError(f"unsupported dtype {value}; use one of {', '.join(DTYPE_CHOICES)}")
    name = _ALIASES.get(str(value).lower(), str(value).lower())
    if name not in DTYPE_CHOICES:
        raise SubnetScopeError(f"unknown dtype '{value}'; use one of {', '.join(DTYPE_CHOICES)}")
    return name


def _named() -> dict[str, torch.dtype]:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def checkpoint_dtype(config: object) -> torch.dtype | None:
    """The dtype a Hugging Face config says its weights are stored in (None: not said)."""
    import torch

    for holder in (config, getattr(config, "text_config", None)):
        value = getattr(holder, "dtype", None) or getattr(holder, "torch_dtype", None)
        if isinstance(value, torch.dtype):
            return value
        if isinstance(value, str) and value in ("bfloat16", "float16", "float32"):
            return getattr(torch, value)
    return None


def _runs_at_speed(device: torch.device, dtype: torch.dtype) -> bool:
    import torch

    if dtype == torch.float32:
        return True
    if device.type == "cuda":
        return dtype == torch.float16 or torch.cuda.is_bf16_supported()
    if device.type == "mps":
        return dtype == torch.float16
    return dtype == torch.bfloat16  # CPU


def resolve_dtype(
    value: str | torch.dtype | None, device: torch.device, stored: torch.dtype | None
) -> torch.dtype:
    """The torch dtype to load in: a named one as asked; `auto` as the module docstring says."""
    import torch

    choice = dtype_choice(value)
    if choice != "auto":
        return _named()[choice]
    stored = stored or torch.float32
    return stored if _runs_at_speed(device, stored) else torch.float32
