"""Weight sources a diff streams from: model folders, safetensors files, hub ids, in-memory dicts.

Every source lists its tensors up front (name, dtype, shape) and reads one row block of one
tensor at a time, so a diff never holds more than a block of each model. A PEFT adapter folder
is a source too (`engine.sparsity.lora`): it reads its base and adds the adapter's update.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from engine.errors import SubnetScopeError
from engine.sparsity.reader import CODES, TensorInfo, TensorSpec, read_header, read_rows

INDEX_FILE = "model.safetensors.index.json"
ADAPTER_CONFIG = "adapter_config.json"
# What a hub download fetches: the weights as safetensors and the configs that name them.
HUB_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "config.json", ADAPTER_CONFIG]


class WeightSource(Protocol):
    """What a diff reads from. `read` returns rows [start, stop) of the tensor's 2-D view."""

    label: str
    config_dir: Path | None  # the folder with the model's config.json, for the tensor layout

    def specs(self) -> dict[str, TensorSpec]: ...

    def read(
        self, name: str, start: int, stop: int, buffer: np.ndarray | None = None
    ) -> torch.Tensor: ...

    def fingerprint(self) -> dict[str, Any] | None:
        """Cheap facts that identify the weights (for cache keys); None: do not cache."""
        ...


@dataclass
class SafetensorsSource:
    """One or several safetensors files (a model folder's shards, or a single file)."""

    label: str
    files: list[Path]
    config_dir: Path | None = None

    def __post_init__(self) -> None:
        self._infos: dict[str, TensorInfo] = {}
        for file in self.files:
            infos, _ = read_header(file)
            if dup := sorted(set(infos) & set(self._infos)):
                raise SubnetScopeError(
                    f"'{self.label}': tensor '{dup[0]}' is stored in two shards "
                    f"({self._infos[dup[0]].file.name} and {file.name})"
                )
            self._infos.update(infos)

    def specs(self) -> dict[str, TensorSpec]:
        return dict(self._infos)

    def info(self, name: str) -> TensorInfo:
        """Where tensor `name` lies on disk (the mapped diff, engine.sparsity.stream, maps it)."""
        return self._infos[name]

    def read(
        self, name: str, start: int, stop: int, buffer: np.ndarray | None = None
    ) -> torch.Tensor:
        return read_rows(self._infos[name], start, stop, buffer)

    def fingerprint(self) -> dict[str, Any]:
        from engine.cache import fingerprint_path

        return {"type": "safetensors", "files": [fingerprint_path(f) for f in self.files]}


@dataclass
class TensorDictSource:
    """Tensors in memory (a training loop's state dict against a saved base, tests)."""

    label: str
    tensors: Mapping[str, torch.Tensor]
    config_dir: Path | None = None

    def specs(self) -> dict[str, TensorSpec]:
        out = {}
        for name, t in self.tensors.items():
            if t.dtype not in CODES:
                raise SubnetScopeError(f"'{self.label}': tensor '{name}' has dtype {t.dtype}")
            out[name] = TensorSpec(name, CODES[t.dtype], tuple(t.shape))
        return out

    def read(
        self, name: str, start: int, stop: int, buffer: np.ndarray | None = None
    ) -> torch.Tensor:
        t = self.tensors[name].detach()
        rows = t.shape[0] if t.dim() >= 2 else 1
        return t.reshape(rows, -1)[start:stop].cpu()

    def fingerprint(self) -> None:
        return None


def safetensors_files(folder: Path) -> list[Path]:
    """A model folder's weight files: the shards its index names, else every *.safetensors."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SubnetScopeError(f"'{index}' is not a safetensors index (no weight_map)") from exc
        files = [folder / name for name in sorted(set(weight_map.values()))]
        if missing := [f.name for f in files if not f.is_file()]:
            raise SubnetScopeError(
                f"'{folder}' is missing {len(missing)} shard(s) its index names: "
                + ", ".join(missing[:3])
            )
        return files
    return sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("."))


def _folder_source(folder: Path, label: str) -> SafetensorsSource:
    files = safetensors_files(folder)
    if not files:
        if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
            why = "only pickle weights (.bin/.pt), which the streaming diff does not read"
            hint = "; save it with save_pretrained(safe_serialization=True)"
        elif any(folder.glob("checkpoint-*")):
            why = "checkpoint-* folders but no weights of its own"
            hint = "; give one checkpoint folder, or use `sparsity series --run-dir`"
        else:
            why, hint = "no .safetensors files", ""
        raise SubnetScopeError(f"'{label}' has {why}{hint}")
    config_dir = folder if (folder / "config.json").is_file() else None
    return SafetensorsSource(label, files, config_dir)


# Whether resolving a hub id may download it. The CLI may (the user typed the command); the
# dashboard resolves under `no_hub_downloads()` and downloads only through `download_hub_weights`
# after a button: a URL parameter or a typed id never starts a download by itself (issue 15).
_HUB_DOWNLOADS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "subnetscope_hub_downloads", default=True
)
MAX_DOWNLOAD_GB = 40.0  # `$SUBNETSCOPE_HUB_MAX_GB` changes it


@contextlib.contextmanager
def no_hub_downloads() -> Iterator[None]:
    """Within this block a hub id resolves from the local hub cache only."""
    token = _HUB_DOWNLOADS.set(False)
    try:
        yield
    finally:
        _HUB_DOWNLOADS.reset(token)


def _hub_folder(repo_id: str) -> Path:
    """The local snapshot of a hub repo's safetensors weights and configs (downloaded if online
    and downloads are allowed here)."""
    from huggingface_hub import snapshot_download

    from engine.runtime import hub_reachable

    online = hub_reachable()
    allowed = online and _HUB_DOWNLOADS.get()
    try:
        path = snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=not allowed)
    except Exception as exc:  # the hub client raises many types; all mean "not available"
        if online and not allowed:
            raise SubnetScopeError(
                f"'{repo_id}' is not in the local hub cache; download it first with the button "
                "(nothing is downloaded without asking)"
            ) from exc
        where = "the hub" if online else "the local hub cache (the hub is unreachable)"
        raise SubnetScopeError(
            f"cannot get '{repo_id}': it is not a local file or folder, and {where} "
            f"does not have it ({type(exc).__name__})"
        ) from exc
    return Path(path)


def hub_cached(repo_id: str) -> bool:
    """Whether the weights of `repo_id` are in the local hub cache already."""
    try:
        with no_hub_downloads():
            _hub_folder(repo_id)
    except SubnetScopeError:
        return False
    return True


def download_hub_weights(repo_id: str, max_gb: float | None = None) -> Path:
    """Download a hub repo's safetensors weights and configs (HUB_PATTERNS), after checking the
    id and that they add up to at most `max_gb` (default `$SUBNETSCOPE_HUB_MAX_GB`, else
    MAX_DOWNLOAD_GB): an explicit user action, never a side effect of reading a link."""
    import fnmatch
    import os

    from huggingface_hub import HfApi, snapshot_download

    from engine.models.loading import is_hub_id

    if not is_hub_id(repo_id):
        raise SubnetScopeError(f"{repo_id[:80]!r} is not a hub id (owner/name)")
    limit = (
        max_gb
        if max_gb is not None
        else float(os.environ.get("SUBNETSCOPE_HUB_MAX_GB", MAX_DOWNLOAD_GB))
    )
    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception as exc:  # unreachable, no such repo, gated: none is downloadable
        raise SubnetScopeError(f"cannot download '{repo_id}': {type(exc).__name__}") from exc
    size = sum(
        f.size or 0
        for f in info.siblings or []
        if any(fnmatch.fnmatch(f.rfilename, p) for p in HUB_PATTERNS)
    )
    if size > limit * 2**30:
        raise SubnetScopeError(
            f"'{repo_id}' holds {size / 2**30:.1f} GB of weights, over the {limit:g} GB limit "
            "(SUBNETSCOPE_HUB_MAX_GB)"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except Exception as exc:
        raise SubnetScopeError(f"cannot download '{repo_id}': {type(exc).__name__}") from exc
