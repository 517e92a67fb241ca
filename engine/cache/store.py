"""A content-addressed artifact store: one folder per entry, published atomically, manifest last."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

import engine
from engine.atomic import (
    fsync_dir,
    save_safetensors_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from engine.cache.fingerprint import cache_key, json_default
from engine.errors import SubnetScopeError
from engine.paths import artifacts_dir

if TYPE_CHECKING:
    import pandas as pd
    import torch

MANIFEST = "manifest.json"
# Dot-prefixed names (temp folders, lock files) are invisible to readers by construction.
TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def _dump_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj, ensure_ascii=False, default=json_default)


@dataclass(frozen=True)
class Entry:
    """A published entry: its folder and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def key(self) -> str:
        return self.manifest["key"]

    def file(self, name: str) -> Path:
        """The path of one of the entry's files; raises if the entry has no such file."""
        path = self.path / _check_name(name, "file name")
        if not path.is_file():
            raise SubnetScopeError(f"cached {self.kind} entry {self.key} has no file '{name}'")
        return path

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text())

    def read_table(self, name: str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.file(name))

    def read_tensors(self, name: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(self.file(name))


class Writer:
    """Writes an entry's files into its private temp folder; the store publishes the folder.

    Each file goes through engine.atomic, so it is on disk (fsynced) before the folder is
    renamed into place."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def file(self, name: str) -> Path:
        return self.path / _check_name(name, "file name")

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.file(name)
        _dump_json(path, obj)
        return path

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        path = self.file(name)
        write_parquet_atomic(path, table)
        return path

    def write_tensors(
        self,
        name: str,
        tensors: dict[str, torch.Tensor],
        metadata: dict[str, str] | None = None,
    ) -> Path:
        path = self.file(name)
        # safetensors refuses non-contiguous and non-CPU tensors.
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_safetensors_atomic(path, tensors, metadata)
        return path


class ArtifactStore:
    """Entries live in `root/<kind>/<key>/`; an entry exists once its folder holds a manifest."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else artifacts_dir()

    def _kind_dir(self, kind: str) -> Path:
        return self.root / _check_name(kind, "artifact kind")

    def _lock(self, kind: str, key: str) -> FileLock:
        kind_dir = self._kind_dir(kind)
        kind_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(kind_dir / f".{_check_name(key, 'artifact key')}.lock")

    def _discard(self, folder: Path) -> None:
        # Rename first so the folder vanishes at once; a failed rmtree leaves only a temp folder.
        doomed = folder.with_name(f"{TMP_PREFIX}del-{folder.name}-{os.getpid()}-{time.time_ns()}")
        folder.replace(doomed)
        fsync_dir(folder.parent)
        shutil.rmtree(doomed, ignore_errors=True)

    def get(self, kind: str, key: str) -> Entry | None:
        """The published entry, or None if there is none (or only an incomplete folder)."""
        path = self._kind_dir(kind) / _check_name(key, "artifact key")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None
        return Entry(path, manifest)

    def list(self, kind: str | None = None) -> list[Entry]:
        """Published entries, newest first."""
        if kind is not None:
            kinds = [kind]
        elif self.root.is_dir():
            kinds = [d.name for d in self.root.iterdir() if d.is_dir() and _NAME.fullmatch(d.name)]
        else:
            kinds = []
        entries = []
        for k in kinds:
            kind_dir = self._kind_dir(k)
            if not kind_dir.is_dir():
                continue
            for d in kind_dir.iterdir():
                if d.is_dir() and _NAME.fullmatch(d.name) and (entry := self.get(k, d.name)):
                    entries.append(entry)
        return sorted(
            entries, key=lambda e: (e.manifest.get("created", ""), e.path.name), reverse=True
        )

    def delete(self, kind: str, key: str) -> bool:
        """Remove an entry; returns whether there was one."""
        path = self._kind_dir(kind) / _check_name(key, "artifact key")
        with self._lock(kind, key):
            if not path.exists():
                return False
            self._discard(path)
            return True

    def clean_stale(self, max_age_s: float = 24 * 3600) -> int:
        """Remove temp folders (crashed writers) untouched for `max_age_s`; returns how many."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - max_age_s
        removed = 0
        for tmp in self.root.glob(f"*/{TMP_PREFIX}*"):
            if not tmp.is_dir():
                continue
            # The newest mtime inside, so a slow writer still filling a subfolder is left alone.
            newest = max([tmp.stat().st_mtime, *(f.stat().st_mtime for f in tmp.rglob("*"))])
            if newest < cutoff:
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        return removed

    def writer(
        self,
        kind: str,
        key: str,
        *,
        params: dict[str, Any] | None = None,
        inputs: dict[str, Any] | list[Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> AbstractContextManager[Writer]:
        """Write an entry atomically: published on a clean exit, discarded on an exception.

        If another writer published the same key first, theirs is kept and ours discarded.
        """
        return self._writer(kind, key, params, inputs, meta, locked=False)

    @contextmanager
    def _writer(
        self,
        kind: str,
        key: str,
        params: dict[str, Any] | None,
        inputs: dict[str, Any] | list[Any] | None,
        meta: dict[str, Any] | None,
        locked: bool,
    ) -> Iterator[Writer]:
        kind_dir = self._kind_dir(kind)
        _check_name(key, "artifact key")
        kind_dir.mkdir(parents=True, exist_ok=True)
        # Inside the store's root, so publishing is an atomic same-filesystem rename.
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key}-", dir=kind_dir))
        try:
            yield Writer(tmp)
            files = [
                {"name": f.relative_to(tmp).as_posix(), "size": f.stat().st_size}
                for f in sorted(tmp.rglob("*"))
                if f.is_file()
            ]
            manifest = {
                "kind": kind,
                "key": key,
                "engine_version": engine.__version__,
                "created": datetime.now(UTC).isoformat(timespec="microseconds"),
                "params": params or {},
                "inputs": inputs if inputs is not None else {},
                "meta": meta or {},
                "files": files,
            }
            _dump_json(tmp / MANIFEST, manifest)  # last: the entry exists once it has a manifest
            if locked:
                self._publish(tmp, kind, key)
            else:
                with self._lock(kind, key):
                    self._publish(tmp, kind, key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, tmp: Path, kind: str, key: str) -> None:
        """Move a finished temp folder into place; the caller holds the entry's lock."""
        if self.get(kind, key) is not None:
            return  # another writer won the race: keep theirs
        final = self._kind_dir(kind) / key
        if final.exists():  # an incomplete folder (no manifest) that no reader can see
            self._discard(final)
        fsync_dir(tmp)
        tmp.replace(final)
        fsync_dir(final.parent)

    def get_or_compute(
        self,
        kind: str,
        inputs: dict[str, Any] | list[Any],
        params: dict[str, Any],
        compute: Callable[[Writer], None],
        *,
        meta: dict[str, Any] | None = None,
    ) -> Entry:
        """The entry for (kind, inputs, params), running `compute` to write it only if missing."""
        key = cache_key(kind, inputs, params)
        if (entry := self.get(kind, key)) is not None:
            return entry
        # Hold the lock across compute so concurrent callers (threads or processes) compute once.
        with self._lock(kind, key):
            if (entry := self.get(kind, key)) is None:
                with self._writer(kind, key, params, inputs, meta, locked=True) as w:
                    compute(w)
                entry = self.get(kind, key)
        if entry is None:
            raise RuntimeError(f"{kind} entry {key} vanished right after it was written")
        return entry
