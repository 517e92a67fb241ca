"""Per-neuron tables of each view's artifacts, read once per file version.

Each table has one row per neuron (layer, neuron) of the space, so a passport is a row lookup and a
neuron set is a sort. Reads are cached by (path, the mtime of the file they read): the artifacts are
immutable once written, and a rewritten one gets a new mtime.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.ica.templates import Templates


def _read(load: Callable[..., Any], path: Path, stamp_file: Path, *extra: str) -> Any:
    stamp = stamp_file.stat().st_mtime_ns if stamp_file.exists() else 0
    return _cached_read(load, str(path), stamp, *extra)


@functools.lru_cache(maxsize=64)
def _cached_read(load: Callable[..., Any], path: str, _stamp: int, *extra: str) -> Any:
    return load(path, *extra)


def _load_diff_neurons(path: str) -> pd.DataFrame:
    from engine.sparsity import DiffResult

    return DiffResult.load(Path(path)).neurons()


def _load_adapter_neurons(path: str, source: str) -> pd.DataFrame:
    from engine.lora.adapters import load_adapter
    from engine.lora.neuron_norms import neuron_delta_norms
    from engine.neurons.space import architecture_of

    return neuron_delta_norms(load_adapter(path), architecture_of(source))


def _load_mixing(path: str) -> np.ndarray | None:
    from safetensors import safe_open

    from engine.ica.artifacts import arrays_path

    arrays = arrays_path(Path(path))
    if not arrays.is_file():
        return None
    with safe_open(str(arrays), "np") as f:
        return f.get_tensor("mixing")


def _load_selected(path: str) -> frozenset[tuple[int, int]]:
    from engine.attribution.pruning import load_neuron_list

    neurons, _ = load_neuron_list(Path(path) / "neurons.json")
    return frozenset((s.layer, s.neuron) for s in neurons)


def _load_templates(path: str) -> Templates:
    from engine.ica.templates import load_templates

    return load_templates(path, space="mlp_neurons")  # the passport's space: intermediate neurons


def diff_neurons(path: Path) -> pd.DataFrame:
    """layer, neuron, up, gate, down (changed share of each), mean: one diff's neurons."""
    return _read(_load_diff_neurons, path, Path(path) / "neurons.safetensors")


def adapter_neurons(path: Path, source: str) -> pd.DataFrame:
    """layer, neuron, up, gate, down, total: ‖ΔW‖ of each neuron's rows / column in an adapter."""
    return _read(_load_adapter_neurons, path, Path(path) / "adapter_model.safetensors", source)


def candidates(path: Path) -> pd.DataFrame:
    """A SparC3 run's candidates: rank (differential order), layer, neuron, scores, wanda_rank."""
    return _read(
        pd.read_parquet, Path(path) / "candidates.parquet", Path(path) / "candidates.parquet"
    )


def selected(path: Path) -> frozenset[tuple[int, int]]:
    """The (layer, neuron) pairs a SparC3 run selected for pruning."""
    return _read(_load_selected, path, Path(path) / "neurons.json")


def mixing(path: Path) -> np.ndarray | None:
    """The ICA mixing matrix (features, components) saved beside a templates file, if any."""
    from engine.ica.artifacts import arrays_path

    return _read(_load_mixing, path, arrays_path(Path(path)))


def templates(path: Path) -> Templates:
    return _read(_load_templates, path, Path(path))


def activation_stats(path: Path):
    """Activation statistics of a `neurons.activations` result folder."""
    from engine.neurons.activations import META_FILE, load_activation_stats

    return _read(load_activation_stats, path, Path(path) / META_FILE)  # meta is written last


def feature_index(tpl: Templates, widths: tuple[int, ...], layer: int, neuron: int) -> int | None:
    """The flat feature of (layer, neuron) in the decomposition's layer order, or None."""
    if layer not in tpl.layers:
        return None
    offset = sum(widths[lay] for lay in tpl.layers[: tpl.layers.index(layer)])
    return offset + neuron
