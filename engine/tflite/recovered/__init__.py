"""A decoder's config read back from its TFLite graph, each value with its evidence.

`recover_config(model)` reads the layers, widths, heads, vocabulary, tied head, local/global
layers and window, RoPE bases, AltUp streams, LAuReL rank and per-layer embedding width off the
graph Google's converter writes; `RecoveredConfig.compare_with(hf_config)` checks them against
the config the model was converted from. A value the graph does not show is "unknown".
"""

from engine.tflite.recovered.base import Values
from engine.tflite.recovered.config import (
    FIELDS,
    Recovered,
    RecoveredConfig,
    load_hf_config,
    source_values,
)
from engine.tflite.recovered.read import pick_signature, recover_config
from engine.tflite.recovered.rope import rope_base

__all__ = [
    "FIELDS",
    "Recovered",
    "RecoveredConfig",
    "Values",
    "load_hf_config",
    "pick_signature",
    "recover_config",
    "rope_base",
    "source_values",
]
