"""Where the TFLite explorer finds files: the synthetic demo set, mediapipe's models, user roots."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from filelock import FileLock

from engine.atomic import atomic_dir, write_bytes_atomic
from engine.names import NAME
from engine.paths import cache_root
from engine.tflite.graph import TFLiteError

SUFFIXES = (".tflite", ".task", ".litertlm")
_READY = "samples-ready"


def samples_dir() -> Path:
    return cache_root() / "tflite-samples"


def ensure_samples() -> Path:
    """The synthetic demo set (small: an MLP, quantized and multi-subgraph models, a Gemma-3n-shaped
    graph, its .task and .litertlm bundles), written once; a half-written set is never used."""
    from engine.tflite.synthetic import write_demo_set

    target = samples_dir()
    if (target / _READY).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=120):
        if (target / _READY).is_file():
            return target
        with atomic_dir(target) as tmp:
            write_demo_set(tmp)
            (tmp / _READY).write_text("ok\n")
    return target


def tflite_roots() -> list[Path]:
    """The synthetic set (first: the explorer opens its Gemma-3n-shaped bundle by default), the
    converter-made samples (engine/tflite/converted), mediapipe's models
    (cache/testdata/mediapipe), uploads, `$SUBNETSCOPE_TFLITE_ROOTS` (path-separated) and
    `~/models`."""
    from engine.tflite.converted.build import converted_root

    roots = [samples_dir(), converted_root(), cache_root() / "testdata" / "mediapipe"]
    roots.append(cache_root() / "uploads")
    env = os.environ.get("SUBNETSCOPE_TFLITE_ROOTS")
    if env:
        roots += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    roots.append(Path("~/models").expanduser())
    return roots


def list_tflite_files(roots: list[Path] | None = None, max_depth: int = 3) -> list[Path]:
    """TFLite models and bundles under the roots, sorted by root then name."""
    found: list[Path] = []
    for root in roots if roots is not None else tflite_roots():
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            depth = len(Path(dirpath).relative_to(root).parts)
            dirnames[:] = [d for d in sorted(dirnames) if not d.startswith(".")]
            if depth >= max_depth:
                dirnames[:] = []
            found += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(SUFFIXES)]
    return found


def save_upload(name: str, data: bytes) -> Path:
    """Keep an uploaded file under cache/uploads (mmap needs a file), named by its content.

    The browser's name never becomes a path (issue 15): its suffix must be one of SUFFIXES, and
    its stem is kept only when it is a plain name (`engine.names.NAME`), else `upload-<hash>`."""
    suffix = Path(name).suffix.lower() if "/" not in name and "\\" not in name else ""
    if suffix not in SUFFIXES:
        raise TFLiteError(
            f"the upload {name[:80]!r} is refused: its name must end in .tflite, .task or "
            ".litertlm and name no folder."
        )
    stem = name[: -len(suffix)]
    stem = stem if NAME.fullmatch(stem) else "upload"
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = cache_root() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{digest}{suffix}"
    if not path.exists():
        write_bytes_atomic(path, data)
    return path
