"""Which local models a user can pick: model folders and GGUF files under configured roots."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.models.demo import DEMO_NAME, DEMO_SOURCE
from engine.models.sources import named_sources
from engine.paths import models_dir


@dataclass(frozen=True)
class ModelChoice:
    source: str  # what load_model takes
    label: str  # what a picker shows


def model_roots() -> list[Path]:
    """`$SUBNETSCOPE_MODEL_ROOTS` (path-separated), else `cache/models` and `~/models`."""
    env = os.environ.get("SUBNETSCOPE_MODEL_ROOTS")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [models_dir(), Path("~/models").expanduser()]


def list_local_models(roots: list[Path] | None = None, max_depth: int = 2) -> list[ModelChoice]:
    """The demo first, then folders with a config.json and .gguf files, found under the roots."""
    choices = [ModelChoice(DEMO_SOURCE, f"{DEMO_NAME} (demo)")]
    seen: set[Path] = set()
    named_folders = list(named_sources().values())
    for root in roots if roots is not None else model_roots():
        if not root.is_dir():
            continue
        for path in sorted(_candidates(root, max_depth)):
            resolved = path.resolve()
            if resolved in seen or resolved.name.startswith("."):
                continue
            seen.add(resolved)
            if path.parent == models_dir() and path.name == "smollm2-135m-instruct":
                continue  # that is the demo, listed first
            named = next((s for s in named_folders if s.path().resolve() == resolved), None)
            if named is not None:
                choices.append(ModelChoice(named.name, named.label))
                continue
            label = f"{path.name}  ({path.parent})"
            choices.append(ModelChoice(str(path), label))
    return choices


def _candidates(root: Path, max_depth: int):
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        if (folder / "config.json").is_file():
            yield folder
            continue
        for entry in entries:
            if entry.is_file() and entry.suffix == ".gguf":
                yield entry
            elif entry.is_dir() and depth < max_depth and not entry.name.startswith("."):
                stack.append((entry, depth + 1))
