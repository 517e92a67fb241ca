"""The sparsity view: base/tuned pickers, heatmap, ranks, localization, coverage, runs."""

from __future__ import annotations

from dashboard.views.sparsity.loaders import diff_of
from dashboard.views.sparsity.panels import (
    compare_panel,
    coverage_panel,
    headline,
    heatmap_panel,
    live_heatmap,
    localization_panel,
    neurons_panel,
    ranks_panel,
    run_is_active,
    shells_panel,
    train_panel,
)
from dashboard.views.sparsity.pickers import (
    diff_base,
    pick_config,
    pick_criterion,
    pick_tuned,
    preselect_from_url,
)

__all__ = [
    "compare_panel",
    "coverage_panel",
    "diff_base",
    "diff_of",
    "headline",
    "heatmap_panel",
    "live_heatmap",
    "localization_panel",
    "neurons_panel",
    "pick_config",
    "pick_criterion",
    "pick_tuned",
    "preselect_from_url",
    "ranks_panel",
    "run_is_active",
    "shells_panel",
    "train_panel",
]
