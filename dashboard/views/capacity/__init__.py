"""The Capacity view: bits a model memorizes on random data, per parameter, and its launcher."""

from __future__ import annotations

from dashboard.views.capacity.panels import launch_panel, results_panel

__all__ = ["launch_panel", "results_panel"]
