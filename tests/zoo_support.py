"""Zoo models of real shapes for the scale tests: built once into the checkout's cache (about
15 s per billion parameters here), shared read-only by every test that needs one."""

from __future__ import annotations

from pathlib import Path

from engine.paths import PROJECT_ROOT

ZOO_ROOT = PROJECT_ROOT / "cache" / "models" / "zoo"


def zoo_folder(name: str) -> Path:
    """The built folder of zoo model `name` (built on first use, whatever the test's cache)."""
    from engine.models.zoo import build_zoo_model

    return build_zoo_model(name, ZOO_ROOT / name)
