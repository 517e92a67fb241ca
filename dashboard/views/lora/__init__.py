"""The LoRA blender view: adapters, blends, generations, geometry, deltas, training, and adapters
generated from prompts."""

from __future__ import annotations

from dashboard.views.lora.loaders import opened
from dashboard.views.lora.panels import (
    adapters_table,
    blend_headline,
    blend_now,
    deltas_panel,
    generate_panel,
    generations_panel,
    geometry_panel,
    save_panel,
    train_panel,
)
from dashboard.views.lora.pickers import (
    base_source,
    blend_controls,
    generator_from_url,
    pick_adapters,
)

__all__ = [
    "adapters_table",
    "base_source",
    "blend_controls",
    "blend_headline",
    "blend_now",
    "deltas_panel",
    "generate_panel",
    "generations_panel",
    "generator_from_url",
    "geometry_panel",
    "opened",
    "pick_adapters",
    "save_panel",
    "train_panel",
]
