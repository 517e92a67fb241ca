"""Per-neuron size of a LoRA update: ‖ΔW‖₂ of each MLP neuron's row of up/gate and column of down.

Exact from the factors through r×r Gram matrices; no d_out×d_in matrix is ever formed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from engine.errors import SubnetScopeError
from engine.lora.adapters import LoraAdapter
from engine.lora.lowrank import Factors
from engine.models.architectures import Architecture

ROLES = ("up", "gate", "down")
COLUMNS = ("layer", "neuron", *ROLES, "total")


def row_norms(f: Factors) -> torch.Tensor:
    """‖row i of scale·B@A‖₂ for every i: sqrt(diag(B (A Aᵀ) Bᵀ))·|scale|, (d_out,) float64."""
    b, a = f.b.double(), f.a.double()
    squared = ((b @ (a @ a.T)) * b).sum(dim=1)  # (d_out,)
    return squared.clamp_min(0).sqrt() * abs(f.scale)


def column_norms(f: Factors) -> torch.Tensor:
    """‖column j of scale·B@A‖₂ for every j: sqrt(diag(Aᵀ (BᵀB) A))·|scale|, (d_in,) float64."""
    b, a = f.b.double(), f.a.double()
    squared = (((b.T @ b) @ a) * a).sum(dim=0)  # (d_in,)
    return squared.clamp_min(0).sqrt() * abs(f.scale)


def _matches(path: str, module: str) -> bool:
    """One path ends the other at a dot: adapters may carry no prefix or another one."""
    return path == module or path.endswith("." + module) or module.endswith("." + path)


def _find(factors: Mapping[str, Factors], module: str, name: str) -> tuple[str, Factors] | None:
    if module in factors:
        return module, factors[module]
    found = [path for path in factors if _matches(path, module)]
    if len(found) > 1:
        raise SubnetScopeError(
            f"Adapter '{name}' has {len(found)} modules that could be the model's {module} "
            f"({found[0]}, {found[1]}); their paths are ambiguous."
        )
    return (found[0], factors[found[0]]) if found else None


def factor_neuron_norms(
    factors: Mapping[str, Factors], architecture: Architecture, name: str = "update"
) -> pd.DataFrame:
    """neuron_delta_norms for any module → factors mapping (an adapter's or a blend's)."""
    frames = []
    for layer, block in enumerate(architecture.blocks):
        width = architecture.neurons_per_layer[layer]
        columns = {}
        for role in ROLES:
            module = getattr(block, role)
            match = _find(factors, module, name) if module else None
            if match is None:
                columns[role] = np.full(width, np.nan)
                continue
            path, f = match
            norms = column_norms(f) if role == "down" else row_norms(f)
            if norms.numel() != width:
                raise SubnetScopeError(
                    f"Adapter '{name}' updates {path} as {f.shape[0]}×{f.shape[1]}, which does "
                    f"not fit layer {layer}'s {width} neurons."
                )
            columns[role] = norms.numpy()
        frames.append(pd.DataFrame({"layer": layer, "neuron": np.arange(width), **columns}))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS})
    table = pd.concat(frames, ignore_index=True)
    squares = table[list(ROLES)].pow(2).sum(axis=1, min_count=1)  # NaN only if no role targeted
    return table.assign(total=np.sqrt(squares))


def neuron_delta_norms(adapter: LoraAdapter, architecture: Architecture) -> pd.DataFrame:
    """One row per MLP neuron (layer, neuron): ‖ΔW‖₂ of its row of up and gate, of its column
    of down (ΔW = scale·B@A as (out, in)), and total = sqrt(up² + gate² + down²).

    A module the adapter does not target gives NaN in its column (and counts 0 in total; total
    is NaN where none is targeted). Module paths match the architecture's by suffix.
    """
    return factor_neuron_norms(adapter.factors, architecture, adapter.name)
