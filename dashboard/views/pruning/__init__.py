"""The neuron-pruning view: SparC3 runs, candidates, live pruning, evaluation, export."""

from __future__ import annotations

from dashboard.views.pruning.loaders import opened
from dashboard.views.pruning.panels import (
    candidates_panel,
    compute_panel,
    evaluation_panel,
    export_panel,
    headline,
    live_panel,
    pick_run,
)

__all__ = [
    "candidates_panel",
    "compute_panel",
    "evaluation_panel",
    "export_panel",
    "headline",
    "live_panel",
    "opened",
    "pick_run",
]
