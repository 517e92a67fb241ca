"""LoRA adapters: sets of PEFT folders, blends (every PEFT type, exact low-rank svd/cat) with their
error, per-call application, geometry from the factors, and delta activations over probe texts."""

from engine.lora.adapters import (
    AdapterInfo,
    AdapterSet,
    LoraAdapter,
    load_adapter,
    load_adapter_set,
)
from engine.lora.blend import METHODS, BlendResult, BlendSpec, blend, save_blend
from engine.lora.deltas import DeltaTable, delta_activations, delta_distances, delta_map
from engine.lora.geometry import cosine_matrix, cosine_table, geometry_table, inspect_adapters
from engine.lora.live import apply_lora
from engine.lora.lowrank import (
    Blend,
    Factors,
    LowRankSVD,
    cat_blend,
    cosine,
    difference_norm,
    effective_rank,
    frobenius,
    lora_scale,
    lowrank_svd,
    singular_values,
    stable_rank,
    stacked,
    svd_blend,
)
from engine.lora.probes import PROBE_SETS, probe_texts

__all__ = [
    "METHODS",
    "PROBE_SETS",
    "AdapterInfo",
    "AdapterSet",
    "Blend",
    "BlendResult",
    "BlendSpec",
    "DeltaTable",
    "Factors",
    "LoraAdapter",
    "LowRankSVD",
    "apply_lora",
    "blend",
    "cat_blend",
    "cosine",
    "cosine_matrix",
    "cosine_table",
    "delta_activations",
    "delta_distances",
    "delta_map",
    "difference_norm",
    "effective_rank",
    "frobenius",
    "geometry_table",
    "inspect_adapters",
    "load_adapter",
    "load_adapter_set",
    "lora_scale",
    "lowrank_svd",
    "probe_texts",
    "save_blend",
    "singular_values",
    "stable_rank",
    "stacked",
    "svd_blend",
]
