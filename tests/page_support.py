"""What page AppTests share: the app's entry file, opening a page, its "View" control."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def open_page(
    monkeypatch: pytest.MonkeyPatch,
    page: str,
    *,
    cache: Path,
    models: Path | None = None,
    env: Mapping[str, str | Path] | None = None,
    state: Mapping[str, object] | None = None,
    timeout: float = 180,
    clear_resources: bool = False,
) -> AppTest:
    """The app switched to `pages/<page>.py`, on its own job cache (and model roots, and `env`):
    the tables earlier AppTests cached in this process cleared (the models too with
    `clear_resources`), `state` set before the first run, and no exception on the way."""
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(cache))
    if models is not None:
        monkeypatch.setenv("SUBNETSCOPE_MODEL_ROOTS", str(models))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, str(value))
    st.cache_data.clear()
    if clear_resources:
        st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def show_view(at: AppTest, name: str) -> None:
    [control] = [s for s in at.get("button_group") if s.label == "View"]
    control.set_value(name).run()
    assert not at.exception, at.exception
