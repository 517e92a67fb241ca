"""What page AppTests share: the app's entry file, switching a page's "View" control."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def show_view(at: AppTest, name: str) -> None:
    [control] = [s for s in at.get("button_group") if s.label == "View"]
    control.set_value(name).run()
    assert not at.exception, at.exception
