"""Where a model's inputs go and where its tensors are summed, on one device or across several.

A model loaded with `device_map="auto"` (engine/models/loading.py, when several GPUs are seen)
has its layers on several devices; accelerate's hooks move activations from layer to layer, but
token ids must start where the input embedding sits, which need not be the first parameter's
device (`LoadedModel.device`). Every method puts its inputs on `input_device(model)` and creates
per-layer tensors on that layer's own device (`module_device`).
"""

from __future__ import annotations

import torch
from torch import nn

_NOWHERE = ("meta",)  # offloaded weights wait on the meta device; no compute happens there


def _real(device: torch.device) -> bool:
    return device.type not in _NOWHERE


def module_device(module: nn.Module) -> torch.device:
    """The device a module computes on: its first real parameter's (or buffer's); CPU if none."""
    for tensor in (*module.parameters(), *module.buffers()):
        if _real(tensor.device):
            return tensor.device
    return torch.device("cpu")


def input_device(model: nn.Module) -> torch.device:
    """The device token ids (and input embeddings) must be on: the input embedding's."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    if isinstance(embedding, nn.Module):
        weight = getattr(embedding, "weight", None)
        if isinstance(weight, torch.Tensor) and _real(weight.device):
            return weight.device
        hook = getattr(embedding, "_hf_hook", None)  # accelerate's offload hook knows where it runs
        execution = getattr(hook, "execution_device", None)
        if execution is not None:
            return torch.device(execution)
    return module_device(model)


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """The dtype for sums over many tokens: float64, except on Apple MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64
