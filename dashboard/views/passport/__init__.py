"""The Neuron passport view: one neuron from every view, and neuron-set overlaps."""

from __future__ import annotations

from dashboard.views.passport.loaders import neuron_space
from dashboard.views.passport.panels import overlap_panel, passport_panel, preselect_from_url

__all__ = ["neuron_space", "overlap_panel", "passport_panel", "preselect_from_url"]
