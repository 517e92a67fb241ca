"""DeltaCache: delta activations of many adapters on disk (LLGBM's `delta.py` layout, seed 004).

A folder with `base_activation.npy` (v(base), (hidden,) float32, stored once), one `<id>.npy` per
adapter (Δ = v(adapter) − v(base), (hidden,) float32) and `manifest.json`, which maps each id to
{"path": the adapter's folder, "norm": ‖Δ‖, "shape": [hidden]}. LLGBM keys by md5(path)[:12]; here
the id is the caller's (a teacher checkpoint's id, e.g. `add_007`). Every file is written
atomically, the manifest after the vector it lists; one writer at a time (the job that owns it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from engine.atomic import atomic_path, write_json_atomic
from engine.errors import SubnetScopeError

MANIFEST = "manifest.json"
BASE = "base_activation.npy"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _vector(value: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise SubnetScopeError(f"{what} must be a non-empty vector, not shape {array.shape}")
    if not np.isfinite(array).all():
        raise SubnetScopeError(f"{what} holds NaN or infinite values")
    return array


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.save(f, array, allow_pickle=False)  # a file object: np.save would append .npy to a name


class DeltaCache:
    """Read and write the delta activations of a set of adapters in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    # reading --------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, dict]:
        path = self.folder / MANIFEST
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SubnetScopeError(
                f"the delta cache manifest {path} is unreadable ({exc})"
            ) from exc
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise SubnetScopeError(f"the delta cache manifest {path} is not a map of ids")
        return data

    def _load(self, path: Path, shape: tuple[int, ...] | None, what: str) -> np.ndarray:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SubnetScopeError(f"the delta cache file {path} is unreadable ({exc})") from exc
        if shape is not None and tuple(array.shape) != shape:
            raise SubnetScopeError(
                f"the delta cache in {self.folder} lists {what} with shape {list(shape)}, but its "
                f"file holds {list(array.shape)}"
            )
        return array.astype(np.float32, copy=False)

    def base(self) -> np.ndarray | None:
        """v(base), or None before `set_base`."""
        path = self.folder / BASE
        return self._load(path, None, "the base activation") if path.is_file() else None

    def ids(self) -> list[str]:
        """The ids the manifest lists, in the order they were put; each must have its file."""
        manifest = self._manifest()
        for adapter_id in manifest:
            if not (self.folder / f"{adapter_id}.npy").is_file():
                raise SubnetScopeError(
                    f"the delta cache in {self.folder} lists '{adapter_id}', but "
                    f"{adapter_id}.npy is missing"
                )
        return list(manifest)

    def entry(self, adapter_id: str) -> dict | None:
        """The manifest's {"path", "norm", "shape"} of one id, or None."""
        return self._manifest().get(adapter_id)

    def get(self, adapter_id: str) -> np.ndarray | None:
        """Δ of one adapter, (hidden,) float32, or None when the cache does not list it."""
        entry = self._manifest().get(adapter_id)
        if entry is None:
            return None
        path = self.folder / f"{adapter_id}.npy"
        if not path.is_file():
            raise SubnetScopeError(
                f"the delta cache in {self.folder} lists '{adapter_id}', but {path.name} is missing"
            )
        return self._load(path, tuple(entry.get("shape", ())), f"'{adapter_id}'")

    # writing --------------------------------------------------------------------------------
    def set_base(self, v: np.ndarray) -> None:
        """Store v(base) once; a later Δ must have its shape."""
        vector = _vector(v, "the base activation")
        listed = self._manifest()
        shapes = {tuple(e.get("shape", ())) for e in listed.values()}
        if shapes and shapes != {vector.shape}:
            raise SubnetScopeError(
                f"the base activation has shape {list(vector.shape)}, but the delta cache in "
                f"{self.folder} holds deltas of shape {[list(s) for s in shapes]}"
            )
        _save(self.folder / BASE, vector)

    def put(self, adapter_id: str, delta: np.ndarray, path: str) -> None:
        """Store Δ of the adapter at `path` under `adapter_id` (replacing an earlier one)."""
        if not _ID.fullmatch(adapter_id) or f"{adapter_id}.npy" == BASE:
            raise SubnetScopeError(
                f"'{adapter_id}' is not a usable delta id (letters, digits, _ . - only, and not "
                "the base's name)"
            )
        vector = _vector(delta, f"the delta of '{adapter_id}'")
        base = self.base()
        if base is not None and base.shape != vector.shape:
            raise SubnetScopeError(
                f"the delta of '{adapter_id}' has shape {list(vector.shape)}, but the base "
                f"activation has {list(base.shape)}"
            )
        manifest = self._manifest()
        _save(self.folder / f"{adapter_id}.npy", vector)
        manifest[adapter_id] = {
            "path": str(path),
            "norm": float(np.linalg.norm(vector.astype(np.float64))),
            "shape": list(vector.shape),
        }
        write_json_atomic(self.folder / MANIFEST, manifest)
