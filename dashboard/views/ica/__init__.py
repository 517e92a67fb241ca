"""The ICA view: templates, components, overlaps, live toggles, masked SFT, building."""

from __future__ import annotations

from dashboard.views.ica.loaders import opened
from dashboard.views.ica.panels import (
    build_panel,
    components_panel,
    headline,
    overlap_panel,
    pick_templates,
    sft_panel,
    toggles_panel,
)

__all__ = [
    "build_panel",
    "components_panel",
    "headline",
    "opened",
    "overlap_panel",
    "pick_templates",
    "sft_panel",
    "toggles_panel",
]
