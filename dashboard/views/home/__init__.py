"""The Home view: the views with their questions and the demo's state."""

from __future__ import annotations

from dashboard.views.home.panels import demo_section, views_section

__all__ = ["demo_section", "views_section"]
