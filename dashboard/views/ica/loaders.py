"""The ICA view's cached loaders: built templates, their arrays, a text's time course."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.loaders import shared_model
from engine.errors import SubnetScopeError
from engine.ica import (
    ComponentArrays,
    Templates,
    list_templates,
    load_arrays,
    load_templates,
    time_course,
)


@st.cache_data(max_entries=4, show_spinner=False)
def template_choices(stamp: str) -> list[tuple[str, str]]:
    """Built templates; `stamp` (the workspace stamp) brings in a build as it finishes."""
    return [(str(e.path), e.label) for e in list_templates()]


@st.cache_resource(max_entries=4, show_spinner="Reading templates…")
def _templates(path: str, mtime_ns: int) -> tuple[Templates, ComponentArrays | None]:
    templates = load_templates(path)
    return templates, load_arrays(templates.path)


def opened(path: str) -> tuple[Templates, ComponentArrays | None]:
    """Templates and their arrays, re-read when the file changes."""
    file = Path(path).expanduser()
    file = file / "templates.json" if file.is_dir() else file
    if not file.is_file():
        raise SubnetScopeError(f"no ICA templates at '{file}'")
    return _templates(str(file), file.stat().st_mtime_ns)


@st.cache_data(max_entries=32, show_spinner=False)
def time_course_of(source: str, dtype: str, path: str, mtime_ns: int, text: str):
    """One forward pass per (model, its dtype, templates, text), not one per rerun of the page."""
    templates, arrays = _templates(path, mtime_ns)
    return time_course(shared_model(source, dtype), templates, arrays, text)
