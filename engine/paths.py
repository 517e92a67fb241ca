"""Where the engine keeps what it derives: the cache root and its sub-folders."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """The cache root: `$SUBNETSCOPE_CACHE` if set, else `cache/` in the checkout."""
    root = os.environ.get("SUBNETSCOPE_CACHE")
    return Path(root).expanduser().resolve() if root else PROJECT_ROOT / "cache"


def models_dir() -> Path:
    return cache_root() / "models"


def artifacts_dir() -> Path:
    return cache_root() / "artifacts"
