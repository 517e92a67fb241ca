"""Which weights fine-tuning moved: streamed diffs, update masks, ranks, localization, shells."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.sparsity.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "compare": ("CompareResult", "compare_runs"),
        "config": (
            "BF16",
            "DEFAULT_TOLERANCES",
            "EXACT",
            "DiffConfig",
            "parse_criterion",
            "tolerance_key",
        ),
        "diff": ("ARTIFACT_KIND", "Mismatch", "compute_diff", "diff", "match_tensors"),
        "layout": ("TensorLayout", "TensorPlace", "layout_for"),
        "localization": (
            "BASES",
            "compare_distributions",
            "depth_profile",
            "gini",
            "localization",
            "normalized_entropy",
            "tensor_fro_localization",
            "top_k_share",
            "BLOCK_CHANGED",
            "TENSOR_FRO",
        ),
        "masks": (
            "MaskSet",
            "coverage",
            "jaccard",
            "overlap_table",
            "overlap_totals",
            "pack",
            "unpack",
        ),
        "ranks": ("RankStats", "ranks_from_spectrum", "update_ranks"),
        "reference": ("script_report", "SCRIPT"),
        "result": ("DiffResult",),
        "series": (
            "SEED_TAUS",
            "SeriesResult",
            "list_checkpoints",
            "seed_tracked",
            "series",
            "SEED_NAME_TOKENS",
        ),
        "shells": ("boundaries_from_config", "shell_boundaries", "shell_summary", "shell_table"),
        "sources": (
            "SafetensorsSource",
            "TensorDictSource",
            "WeightSource",
            "download_hub_weights",
            "hub_cached",
            "no_hub_downloads",
        ),
        "resolve": ("open_source",),
        "tables": ("aggregate", "counts", "per_layer"),
        "precision": ("opening_criterion", "pair_precision", "result_precision"),
    },
)
