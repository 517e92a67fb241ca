"""The TFLite explorer view: file pickers, summary, ops, tensors, graph, findings, weights, diff."""

from __future__ import annotations

from dashboard.views.tflite.loaders import file_key, opened_reader
from dashboard.views.tflite.panels import (
    converter_samples,
    diff_panel,
    findings_panel,
    graph_panel,
    ops_panel,
    pick_file,
    pick_section,
    summary,
    tensors_panel,
    weights_panel,
)

__all__ = [
    "converter_samples",
    "diff_panel",
    "file_key",
    "findings_panel",
    "graph_panel",
    "opened_reader",
    "ops_panel",
    "pick_file",
    "pick_section",
    "summary",
    "tensors_panel",
    "weights_panel",
]
