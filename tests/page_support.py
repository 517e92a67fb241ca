"""What page AppTests share: switching a page's "View" segmented control."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def show_view(at: AppTest, name: str) -> None:
    [control] = [s for s in at.get("button_group") if s.label == "View"]
    control.set_value(name).run()
    assert not at.exception, at.exception
