"""Pruning neuron lists: reversible (per-call masks) for live use, permanent (zeroed weights) for
export, and the JSON list `[{"layer": L, "neuron": i, "score": s}, ...]` with metadata."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from engine.atomic import atomic_dir, write_json_atomic
from engine.attribution.scores import Selected
from engine.errors import SubnetScopeError
from engine.models import LoadedModel, NeuronMask

FORMAT = "subnetscope.neuron-list"


def save_neuron_list(
    neurons: Sequence[Selected], path: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Most prunable first. The object also reads as a mask (`models generate --mask`)."""
    path = Path(path)
    write_json_atomic(
        path,
        {
            "format": FORMAT,
            "mode": "zero",
            "metadata": metadata or {},
            "neurons": [{"layer": n.layer, "neuron": n.neuron, "score": n.score} for n in neurons],
        },
    )
    return path


def load_neuron_list(path: str | Path) -> tuple[list[Selected], dict[str, Any]]:
    """Our file, or a bare `[{"layer", "neuron", "score"?}, ...]` list, in its order."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "neurons.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubnetScopeError(f"no neuron list at '{path}'") from None
    except json.JSONDecodeError as exc:
        raise SubnetScopeError(
            f"'{path}' is not valid JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    entries, metadata = (
        (data, {}) if isinstance(data, list) else (data.get("neurons"), data.get("metadata") or {})
    )
    if not isinstance(entries, list):
        raise SubnetScopeError(f"'{path}' must hold a list of {{layer, neuron, score}} entries")
    try:
        neurons = [
            Selected(int(e["layer"]), int(e["neuron"]), float(e.get("score", float("nan"))))
            for e in entries
        ]
    except (KeyError, TypeError, ValueError):
        raise SubnetScopeError(f"each entry of '{path}' needs integer layer and neuron") from None
    return neurons, {**metadata, "path": str(path)}


def pruning_mask(neurons: Sequence[Selected], num: int | None = None) -> NeuronMask:
    """The first `num` neurons (all by default) as a reversible zero mask."""
    chosen = list(neurons)[: num if num is not None else len(neurons)]
    return NeuronMask.from_pairs(
        [(n.layer, n.neuron) for n in chosen], mode="zero", meta={"source": "pruning"}
    )


def prune_permanently(loaded: LoadedModel, neurons: Sequence[Selected]) -> int:
    """Zero each neuron's row in up and gate (and their biases) and its column in down, in place
    on `loaded.model` — a model this caller owns, never the dashboard's shared one. Returns the
    number of neurons pruned."""
    mask = pruning_mask(neurons)
    mask.validate(loaded.architecture)
    arch = loaded.architecture
    with torch.no_grad():
        for layer, indices in mask.neurons.items():
            idx = torch.tensor(indices)
            block = arch.blocks[layer]
            for name in (block.up, block.gate):
                if name is None:
                    continue
                module = loaded.model.get_submodule(name)
                # Linear: weight (neurons, hidden); GPT-2 Conv1D: weight (hidden, neurons)
                if arch.transposed_weights:
                    module.weight[:, idx] = 0
                else:
                    module.weight[idx, :] = 0
                if getattr(module, "bias", None) is not None:
                    module.bias[idx] = 0
            down = loaded.model.get_submodule(block.down)
            if arch.transposed_weights:
                down.weight[idx, :] = 0
            else:
                down.weight[:, idx] = 0
    return mask.size


def save_pruned_model(
    source: str,
    neurons: Sequence[Selected],
    out: str | Path,
    metadata: dict | None = None,
    *,
    dtype: str = "auto",
) -> Path:
    """Load `source` fresh (a private copy: the shared one is never changed), prune it
    permanently, save a model folder with `pruning.json`. `auto` keeps the checkpoint's storage
    dtype (zeroed rows are exact in any dtype), so a bf16 model is saved as bf16."""
    from engine.models import load_model

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SubnetScopeError(f"'{out}' exists and is not empty; choose a new folder")
    loaded = load_model(source, dtype=dtype)
    count = prune_permanently(loaded, neurons)
    metadata = {**(metadata or {}), "dtype": str(loaded.dtype).removeprefix("torch.")}
    with atomic_dir(out) as tmp:  # the model picker never lists half a model
        loaded.model.save_pretrained(str(tmp), safe_serialization=True)
        loaded.tokenizer.save_pretrained(str(tmp))
        save_neuron_list(
            list(neurons),
            tmp / "pruning.json",
            {**metadata, "source": source, "pruned": count},
        )
    return out
