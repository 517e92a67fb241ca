"""Tables that describe a model: blocks × modules with shapes and parameter counts."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from torch import nn

from engine.models.loading import LoadedModel

_ROLE_ORDER = ("attention", "mlp.up", "mlp.gate", "mlp.down", "norm")


def _module_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=True))


def _shape(module: nn.Module) -> str:
    weight = getattr(module, "weight", None)
    return "×".join(str(d) for d in weight.shape) if weight is not None else ""


def model_summary(loaded: LoadedModel) -> pd.DataFrame:
    """One row per (block, module): layer, role, module name, type, weight shape, parameters."""
    model, arch = loaded.model, loaded.architecture
    rows = []
    for block in arch.blocks:
        named = [("attention", n) for n in block.attention]
        named += [("mlp.up", block.up), ("mlp.gate", block.gate), ("mlp.down", block.down)]
        named += [("norm", n) for n in block.norms]
        for role, name in named:
            if name is None:
                continue
            module = model.get_submodule(name)
            rows.append(
                {
                    "layer": block.index,
                    "role": role,
                    "module": name,
                    "type": type(module).__name__,
                    "shape": _shape(module),
                    "parameters": _module_params(module),
                }
            )
    return pd.DataFrame(rows, columns=["layer", "role", "module", "type", "shape", "parameters"])


def _parameter_kind(name: str, arch_modules: dict[str, str]) -> str:
    owner = name.rsplit(".", 1)[0]
    if owner in arch_modules:
        return arch_modules[owner]
    lowered = name.lower()
    if "embed" in lowered or "wte" in lowered or "wpe" in lowered:
        return "embedding"
    if "lm_head" in lowered:
        return "lm head"
    if "norm" in lowered or "ln_" in lowered:
        return "norm"
    return "other"


def parameters_by_kind(loaded: LoadedModel) -> pd.DataFrame:
    """Parameter counts grouped by module kind (attention, MLP up/gate/down, norms, embeddings…).

    Tied weights (an lm_head sharing the embedding) are counted once, as torch does.
    """
    roles: dict[str, str] = {}
    for block in loaded.architecture.blocks:
        for name in block.attention:
            roles[name] = "attention"
        for role, name in (
            ("mlp.up", block.up),
            ("mlp.gate", block.gate),
            ("mlp.down", block.down),
        ):
            if name is not None:
                roles[name] = role
        for name in block.norms:
            roles[name] = "norm"
    counts: Counter[str] = Counter()
    for name, param in loaded.model.named_parameters():  # deduplicates tied parameters
        counts[_parameter_kind(name, roles)] += param.numel()
    total = sum(counts.values())
    rows = [
        {"kind": kind, "parameters": n, "share": n / total if total else 0.0}
        for kind, n in counts.most_common()
    ]
    return pd.DataFrame(rows, columns=["kind", "parameters", "share"])


def architecture_facts(loaded: LoadedModel) -> dict:
    """The JSON of `models inspect`: sizes and, per layer, the module names found."""
    arch = loaded.architecture
    widths = list(arch.neurons_per_layer)
    return {
        "source": loaded.source,
        "name": loaded.display_name,
        "architecture": arch.family,
        "model_type": arch.model_type,
        "model_class": type(loaded.model).__name__,
        "num_layers": arch.num_layers,
        "hidden_size": arch.hidden_size,
        "intermediate_size": widths[0] if len(set(widths)) == 1 else widths,
        "num_parameters": sum(p.numel() for p in loaded.model.parameters()),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "device": str(loaded.device),
        "fallback_detection": arch.fallback,
        "has_chat_template": bool(getattr(loaded.tokenizer, "chat_template", None)),
        "layers": [
            {
                "layer": b.index,
                "up": b.up,
                "gate": b.gate,
                "down": b.down,
                "neurons": w,
                "attention": list(b.attention),
                "norms": list(b.norms),
            }
            for b, w in zip(arch.blocks, widths, strict=True)
        ],
    }
