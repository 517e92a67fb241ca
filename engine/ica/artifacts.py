"""The arrays behind a template file: mixing maps, per-token sources and the captured texts.

`<stem>.arrays.safetensors` holds mixing (features, k), unmixing (k, features), mean, offset,
sources (tokens, k), token_ids, text_index and position; `<stem>.texts.json` holds the texts and
which dataset each came from. Both are optional: a seed-001 template file works without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.atomic import save_safetensors_atomic, write_json_atomic
from engine.errors import SubnetScopeError
from engine.ica.capture import Activations
from engine.ica.decompose import ICAResult


def arrays_path(template_path: Path) -> Path:
    return template_path.with_name(f"{template_path.stem}.arrays.safetensors")


def texts_path(template_path: Path) -> Path:
    return template_path.with_name(f"{template_path.stem}.texts.json")


@dataclass
class ComponentArrays:
    """Everything needed to explain components: maps, sources per captured token, the texts."""

    mixing: np.ndarray  # (features, k)
    unmixing: np.ndarray  # (k, features)
    mean: np.ndarray  # (features,)
    offset: np.ndarray  # (k,)
    sources: np.ndarray  # (tokens, k)
    token_ids: np.ndarray  # (tokens,)
    text_index: np.ndarray  # (tokens,)
    position: np.ndarray  # (tokens,)
    texts: list[str]
    text_dataset: np.ndarray  # (texts,)
    datasets: list[str]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) - self.mean) @ self.unmixing.T - self.offset


def save_arrays(template_path: Path, result: ICAResult, acts: Activations) -> None:
    tensors = {
        "mixing": result.mixing,
        "unmixing": result.unmixing,
        "mean": result.mean,
        "offset": result.offset,
        "sources": result.sources,
        "token_ids": acts.token_ids.astype(np.int64),
        "text_index": acts.text_index.astype(np.int32),
        "position": acts.position.astype(np.int32),
        "text_dataset": acts.text_dataset.astype(np.int32),
    }
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    save_safetensors_atomic(arrays_path(template_path), arrays)
    write_json_atomic(texts_path(template_path), {"datasets": acts.datasets, "texts": acts.texts})


def load_arrays(template_path: Path) -> ComponentArrays | None:
    """The arrays saved beside `template_path`, or None when there are none."""
    from safetensors.numpy import load_file

    arrays, texts = arrays_path(template_path), texts_path(template_path)
    if not arrays.is_file() or not texts.is_file():
        return None
    try:
        t = load_file(str(arrays))
        meta = json.loads(texts.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SubnetScopeError(f"cannot read the arrays beside '{template_path}' ({exc})") from None
    return ComponentArrays(
        mixing=t["mixing"],
        unmixing=t["unmixing"],
        mean=t["mean"],
        offset=t["offset"],
        sources=t["sources"],
        token_ids=t["token_ids"],
        text_index=t["text_index"],
        position=t["position"],
        texts=list(meta["texts"]),
        text_dataset=t["text_dataset"],
        datasets=list(meta["datasets"]),
    )
