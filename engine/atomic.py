"""Atomic, durable writes: a temp file in the same folder, fsync, os.replace, fsync the folder.

Readers see the old file or the new one, never a partial write; after the call returns, a power
loss or a kill -9 keeps the new file. Every file the engine writes for another process (job
files, result tables, tensors, templates, adapters) goes through here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new entry in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is still atomic
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain_mode(path: Path, folder: bool = False) -> None:
    """mkstemp / mkdtemp make 0600 / 0700; a published file gets the mode a plain open() would
    give it (0666 / 0777 less the umask), so a cache shared between users stays readable."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder` (before it is published by a rename)."""
    for sub in sorted(Path(folder).rglob("*"), reverse=True):
        if sub.is_file() and not sub.is_symlink():
            _fsync_file(sub)
        elif sub.is_dir():
            fsync_dir(sub)
    fsync_dir(Path(folder))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside `path`; write it (any library, any format), and on a clean exit
    it is fsynced and renamed onto `path`. On an error the temp file is removed and `path` keeps
    what it held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        _plain_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path | str, obj: Any, **dump_options: Any) -> None:
    """JSON with indent 2 and a final newline (`dump_options` go to json.dumps)."""
    options = {"indent": 2, "default": str, **dump_options}
    write_text_atomic(path, json.dumps(obj, **options) + "\n")


def write_parquet_atomic(path: Path | str, table: Any, **options: Any) -> None:
    """A pandas DataFrame as parquet (`options` go to DataFrame.to_parquet)."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, **options)


def save_safetensors_atomic(
    path: Path | str, tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> None:
    """Torch tensors or NumPy arrays (not mixed) as one safetensors file."""
    first = next(iter(tensors.values()), None)
    if first is not None and type(first).__module__.startswith("numpy"):
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


@contextlib.contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield a temp folder beside `target`; fill it, and on a clean exit every file in it is
    fsynced and the folder renamed onto `target` (an existing `target` is replaced). On an error
    the temp folder is removed and `target` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        fsync_tree(tmp)
        _plain_mode(tmp, folder=True)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)
