"""LoRA adapters: blending (PEFT types and an exact low-rank SVD path), geometry, deltas."""

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

__all__ = [
    "Blend",
    "Factors",
    "LowRankSVD",
    "cat_blend",
    "cosine",
    "difference_norm",
    "effective_rank",
    "frobenius",
    "lora_scale",
    "lowrank_svd",
    "singular_values",
    "stable_rank",
    "stacked",
    "svd_blend",
]
