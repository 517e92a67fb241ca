"""Attention heads: local vs global layout, per-head statistics and maps, base vs tuned, and the
per-call "make a global layer local" ablation with its sweep (seed 003)."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.attention.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "layout": ("LayerAttention", "attention_layout", "layout_table"),
        "capture": (
            "STATS",
            "STAT_LABELS",
            "AttentionMap",
            "HeadStats",
            "attention_map",
            "head_stats",
        ),
        "localize": ("localized",),
    },
)
