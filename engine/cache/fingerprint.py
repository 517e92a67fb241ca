"""Cheap JSON-able fingerprints of inputs (files, folders, models) and the cache keys on them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import engine
from engine.errors import SubnetScopeError

# Files up to this size are identified by content; larger ones by size + mtime, which is what a
# model folder's weights need (hashing gigabytes on every dashboard rerun is not cheap).
HASH_LIMIT_BYTES = 1 << 20


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_facts(path: Path, hash_limit: int) -> dict[str, Any]:
    stat = path.stat()
    if stat.st_size <= hash_limit:
        return {"size": stat.st_size, "sha256": _sha256_file(path)}
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def fingerprint_path(path: str | Path, *, hash_limit: int = HASH_LIMIT_BYTES) -> dict[str, Any]:
    """Fingerprint a file (size + content hash or mtime) or a folder (its files, recursively)."""
    p = Path(path).expanduser().resolve()
    if p.is_file():
        return {"type": "file", "path": str(p), **_file_facts(p, hash_limit)}
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return {
            "type": "dir",
            "path": str(p),
            "files": [
                {"name": f.relative_to(p).as_posix(), **_file_facts(f, hash_limit)} for f in files
            ],
        }
    raise SubnetScopeError(f"cannot fingerprint '{path}': no such file or folder")


def fingerprint_model(model_id: str, revision: str | None = None) -> dict[str, Any]:
    """Fingerprint a model: its local folder's files, or its hub id and revision."""
    if Path(model_id).expanduser().exists():
        return {"type": "model", "revision": revision, "local": fingerprint_path(model_id)}
    return {"type": "model", "id": model_id, "revision": revision}


def json_default(obj: Any) -> Any:
    """`json.dumps` fallback for the non-JSON types that configs carry: paths and dataclasses."""
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"cache key part of type {type(obj).__name__} is not JSON-able")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal values always give equal text."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default
    )


def cache_key(kind: str, inputs: dict[str, Any] | list[Any], params: dict[str, Any]) -> str:
    """The 24-hex-digit key of an artifact: kind, input fingerprints, params and engine version."""
    payload = {
        "kind": kind,
        "inputs": inputs,
        "params": params,
        # Read at call time so a version bump (or a test's monkeypatch) invalidates old entries.
        "engine_version": engine.__version__,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()[:24]
