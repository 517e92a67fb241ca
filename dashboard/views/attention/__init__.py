"""The Attention view: head statistics and maps, base vs tuned, localized layers, context length."""

from __future__ import annotations

from dashboard.views.attention.panels import (
    compare_panel,
    context_panel,
    heads_panel,
    localize_panel,
)
from dashboard.views.attention.pickers import texts_picker

__all__ = ["compare_panel", "context_panel", "heads_panel", "localize_panel", "texts_picker"]
