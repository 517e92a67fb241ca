"""Attention heads: local vs global layout, per-head statistics and maps, base vs tuned, and the
per-call "make a global layer local" ablation with its sweep (seed 003)."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.attention.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "layout": ("LayerAttention", "attention_layout", "layout_table"),
        "capture": (
            "AttentionMap",
            "HeadStats",
            "attention_map",
            "head_stats",
        ),
        "localize": ("localized",),
        "catalog": ("context_results", "sweep_results"),
        "compare": (
            "TunedChoice",
            "change_by_kind",
            "choice_of",
            "compare_heads",
            "reference_stats",
            "tuned_choices",
            "tuned_stats",
        ),
        "config": (
            "CONTEXT_KIND",
            "DEMO_CONTEXT",
            "DEMO_SWEEP",
            "STATS",
            "STAT_LABELS",
            "SWEEP_KIND",
        ),
        "jobs": ("BASELINE_FILE", "CONTEXT_FILE", "LAYOUT_FILE", "SWEEP_FILE", "TIMING_FILE"),
    },
)
