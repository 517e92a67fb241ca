"""The pruning view's cached loaders: finished SparC3 runs and their results."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from engine.attribution import SparC3Result, list_runs, load_result
from engine.errors import SubnetScopeError


@st.cache_data(max_entries=4, show_spinner=False)
def run_choices(stamp: str) -> list[tuple[str, str]]:
    """Finished SparC3 runs; `stamp` (the workspace stamp) brings in a run as it finishes."""
    return [(str(e.path), e.label) for e in list_runs()]


@st.cache_resource(max_entries=4, show_spinner="Reading the run…")
def _result(path: str, mtime_ns: int) -> SparC3Result:
    return load_result(path)


def opened(path: str) -> SparC3Result:
    folder = Path(path).expanduser()
    summary = folder / "sparc3.json"
    if not summary.is_file():
        raise SubnetScopeError(f"no SparC3 result in '{folder}' (no sparc3.json)")
    return _result(str(folder), summary.stat().st_mtime_ns)
