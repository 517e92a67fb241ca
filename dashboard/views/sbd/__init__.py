"""The Set block decoding view: SBD vs autoregressive decoding of a prompt, the trade-off, jobs."""

from __future__ import annotations

from dashboard.views.sbd.panels import decode_panel, tradeoff_panel, train_panel
from dashboard.views.sbd.pickers import run_picker

__all__ = ["decode_panel", "run_picker", "tradeoff_panel", "train_panel"]
