"""Cache keys that follow the data: what changes when a job ends, an artifact appears or weights
change, so that the caches keyed by them show it without a restart.

Streamlit never hashes a cached function's parameters whose names start with "_"
(`cached(x, _stamp)` is keyed by `x` alone), so a stamp is always a plain, hashed argument.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import streamlit as st

from engine.cache import canonical_json, fingerprint_path
from engine.paths import cache_root

FOLLOW_S = 3.0  # how often a page that lists finished results looks for new ones


@st.cache_data(ttl=2.0, max_entries=4, show_spinner=False)
def _workspace(root: str) -> str:
    from engine.jobs import list_jobs
    from engine.lora import saved_dir
    from engine.paths import artifacts_dir

    parts = [root, *(f"{v.id}:{v.status.state}" for v in list_jobs(limit=1000))]
    for folder in (artifacts_dir() / "sparsity-diff", saved_dir()):
        if folder.is_dir():
            parts += sorted(f"{p.name}:{p.stat().st_mtime_ns}" for p in folder.iterdir())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def workspace_stamp() -> str:
    """Changes when a job changes state, a diff is cached or an adapter is saved in the current
    cache: the key of every cache that lists or gathers finished results. Read at most every 2 s
    however often pages rerun, and per cache root."""
    return _workspace(str(cache_root()))


def workspace_changed() -> None:
    """After this process wrote to the workspace itself (a blend saved): read the stamp afresh
    on the next call instead of up to 2 s later."""
    _workspace.clear()


def path_stamp(spec: str | None) -> str:
    """Changes when the weights at `spec` do: the engine's fingerprint of the file or folder (size
    + mtime of large files, content of small ones); empty for `demo` or a hub id, which the engine
    fingerprints itself."""
    if not spec or not Path(spec).expanduser().exists():
        return ""
    return canonical_json(fingerprint_path(spec))


def models_stamp() -> tuple:
    """Changes when a model folder appears under a model root (or inside one of its folders: a
    saved model's config.json is written after its folder)."""
    from engine.models import model_roots

    parts: list[tuple[str, int | None]] = []
    for root in model_roots():
        try:
            parts.append((str(root), root.stat().st_mtime_ns))
            with os.scandir(root) as entries:
                parts += sorted((e.path, e.stat().st_mtime_ns) for e in entries if e.is_dir())
        except OSError:
            parts.append((str(root), None))
    return tuple(parts)


def follow_workspace() -> None:
    """Rerun the page when the workspace stamp moves (a job ended, an artifact appeared), so a
    view that lists finished results shows a new one without a click."""
    drawn = workspace_stamp()

    @st.fragment(run_every=FOLLOW_S)
    def watch() -> None:
        if workspace_stamp() != drawn:
            st.rerun()

    with st.sidebar:
        watch()
