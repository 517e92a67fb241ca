"""MatFormer shells: update fractions in nested slices of the FFN neurons (Gemma-3n).

A MatFormer FFN of width I nests smaller FFNs in its first neurons (Devvrit et al. 2023,
arXiv:2310.07707): the submodel of width k uses up/gate rows [0, k) and down columns [0, k).
Shell j is the slice [b_j, b_{j+1}) between consecutive boundaries; seed 000 asks whether RL
concentrates its updates in particular shells.

Seed 000's own analyzer (SparseLLM-RL `configs/gemma3n_config.py`, `MatFormerNestingAnalyzer` /
`analyze_matformer_nesting`) does something else: it cuts the **model width d_model** (its
`hidden_dim`) into 4 equal quarters and, for every 2-D MLP weight, counts the **rows** with
index < d_model that hold any |ΔW| > τ (τ = 1e-6), per quarter. Those rows are FFN neurons in
gate/up (only the first d_model of them are looked at) and model-width channels in down, and
its quarters are not the widths MatFormer nests. This module follows MatFormer instead: the
nested submodels share the *leading FFN neurons* (up/gate rows and down columns [0, k)) at the
widths the config lists, and each shell reports its changed weights, not rows with any change.
Boundaries d_model/4, d_model/2, 3·d_model/4, d_model give the seed's quarters on the FFN-neuron
axis only; its any-change row count, and its down-projection rows (model channels), are not
computed here.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from engine.errors import SubnetScopeError
from engine.sparsity.config import parse_criterion
from engine.sparsity.result import DiffResult, neuron_key

SHELL_COLUMNS = [
    "layer",
    "module",
    "role",
    "shell",
    "start",
    "stop",
    "neurons",
    "numel",
    "changed",
    "fraction",
]


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("text_config") or config


def boundaries_from_config(config: dict[str, Any] | str | Path) -> list[int]:
    """Shell boundaries from a (Gemma-3n) config: 0 and every distinct FFN width it lists."""
    if not isinstance(config, dict):
        path = Path(config)
        path = path / "config.json" if path.is_dir() else path
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SubnetScopeError(f"cannot read a model config at '{path}'") from exc
    sizes = _text_config(config).get("intermediate_size")
    if sizes is None:
        raise SubnetScopeError("the config has no intermediate_size to take shells from")
    widths = sizes if isinstance(sizes, list) else [sizes]
    return shell_boundaries(widths)


def shell_boundaries(values: Sequence[int]) -> list[int]:
    """Boundaries [0, b1, …, I] from entered boundaries, or from nested widths (e.g. a config's
    per-layer intermediate sizes, or the widths of E2B and E4B): 0 is added, order sorted."""
    try:
        points = sorted({0, *(int(v) for v in values)})
    except (TypeError, ValueError) as exc:
        raise SubnetScopeError(f"shell boundaries must be integers, not {list(values)}") from exc
    if points[0] < 0 or len(points) < 2:
        raise SubnetScopeError(f"give at least one positive shell boundary, not {list(values)}")
    return points


def shell_table(
    result: DiffResult, boundaries: Sequence[int], criterion: str | float | None = None
) -> pd.DataFrame:
    """Per layer, MLP weight (up/gate/down) and shell: the neurons' weights and changed share.

    A layer narrower than a boundary has only the shells that fit (the last one clipped).
    """
    points = shell_boundaries(boundaries)
    label = parse_criterion(result.config.mask_criterion if criterion is None else criterion)
    tensors = result.tensors.drop_duplicates("tensor")
    mlp = tensors[tensors["role"].isin(["up", "gate", "down"]) & (tensors["param"] == "weight")]
    if mlp.empty:
        raise SubnetScopeError("this diff has no MLP up/gate/down weights to split into shells")
    rows = []
    for t in mlp.itertuples():
        axis = result.layout.neuron_axis(t.role)
        key = neuron_key(t.tensor, label, "rows" if axis == 0 else "cols")
        per_neuron = result.neuron_counts.get(key)
        if per_neuron is None:
            continue
        width = per_neuron.size
        other = t.numel // max(width, 1)
        for shell, (start, stop) in enumerate(itertools.pairwise(points)):
            if start >= width:
                break
            stop = min(stop, width)
            changed = int(per_neuron[start:stop].sum())
            numel = (stop - start) * other
            rows.append(
                {
                    "layer": t.layer,
                    "module": t.module,
                    "role": t.role,
                    "shell": shell,
                    "start": start,
                    "stop": stop,
                    "neurons": stop - start,
                    "numel": numel,
                    "changed": changed,
                    "fraction": changed / numel if numel else None,
                }
            )
    return pd.DataFrame(rows, columns=SHELL_COLUMNS)


def shell_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Shells summed over layers, per role: is one shell updated more than the others?"""
    out = table.groupby(["shell", "role"], as_index=False).agg(
        start=("start", "min"),
        stop=("stop", "max"),
        numel=("numel", "sum"),
        changed=("changed", "sum"),
    )
    out["fraction"] = out["changed"] / out["numel"].where(out["numel"] > 0)
    return out
