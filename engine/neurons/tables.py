"""Per-neuron tables of each view's artifacts, read once per file version.

Each table has one row per neuron (layer, neuron) of the space, so a passport is a row lookup and a
neuron set is a sort. Reads are cached by (path, mtime): the artifacts are immutable once written.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from engine.ica.templates import Templates


def _stamp(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def diff_neurons(path: Path) -> pd.DataFrame:
    """layer, neuron, up, gate, down (changed share of each), mean: one diff's neurons."""
    return _diff_neurons(str(path), _stamp(Path(path) / "neurons.safetensors"))


@functools.lru_cache(maxsize=32)
def _diff_neurons(path: str, _stamp: int) -> pd.DataFrame:
    from engine.sparsity import DiffResult

    return DiffResult.load(Path(path)).neurons()


def adapter_neurons(path: Path, source: str) -> pd.DataFrame:
    """layer, neuron, up, gate, down, total: ‖ΔW‖ of each neuron's rows / column in an adapter."""
    return _adapter_neurons(str(path), _stamp(Path(path) / "adapter_model.safetensors"), source)


@functools.lru_cache(maxsize=32)
def _adapter_neurons(path: str, _stamp: int, source: str) -> pd.DataFrame:
    from engine.lora.adapters import load_adapter
    from engine.lora.neuron_norms import neuron_delta_norms
    from engine.neurons.space import architecture_of

    return neuron_delta_norms(load_adapter(path), architecture_of(source))


def candidates(path: Path) -> pd.DataFrame:
    """A SparC3 run's candidates: rank (differential order), layer, neuron, scores, wanda_rank."""
    return _candidates(str(path), _stamp(Path(path) / "candidates.parquet"))


@functools.lru_cache(maxsize=16)
def _candidates(path: str, _stamp: int) -> pd.DataFrame:
    return pd.read_parquet(Path(path) / "candidates.parquet")


def mixing(path: Path) -> np.ndarray | None:
    """The ICA mixing matrix (features, components) saved beside a templates file, if any."""
    from engine.ica.artifacts import arrays_path

    return _mixing(str(path), _stamp(arrays_path(Path(path))))


@functools.lru_cache(maxsize=8)
def _mixing(path: str, _stamp: int) -> np.ndarray | None:
    from safetensors import safe_open

    from engine.ica.artifacts import arrays_path

    arrays = arrays_path(Path(path))
    if not arrays.is_file():
        return None
    with safe_open(str(arrays), "np") as f:
        return f.get_tensor("mixing")


def templates(path: Path) -> Templates:
    return _templates(str(path), _stamp(Path(path)))


@functools.lru_cache(maxsize=8)
def _templates(path: str, _stamp: int) -> Templates:
    from engine.ica.templates import load_templates

    return load_templates(path)


def feature_index(tpl: Templates, widths: tuple[int, ...], layer: int, neuron: int) -> int | None:
    """The flat feature of (layer, neuron) in the decomposition's layer order, or None."""
    if layer not in tpl.layers:
        return None
    offset = sum(widths[lay] for lay in tpl.layers[: tpl.layers.index(layer)])
    return offset + neuron


def cached(path: Path, load):
    """`load(path)` once per version of the folder (its newest file's mtime)."""
    folder = Path(path)
    stamp = max((f.stat().st_mtime_ns for f in folder.iterdir()), default=0)
    return _cached(str(folder), stamp, load)


@functools.lru_cache(maxsize=8)
def _cached(path: str, _stamp: int, load):
    return load(path)
