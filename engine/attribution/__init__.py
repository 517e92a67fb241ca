"""Attribution: LRP (LXT) and Wanda scores, differential selection, pruning, evaluation (SparC3)."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.attribution.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "live": ("live_pruning",),
        "pruning": ("pruning_mask", "save_pruned_model"),
        "results": ("SparC3Result", "layer_distribution", "list_runs", "load_result"),
        "scores": ("Selected",),
        "sparc3": ("SparC3Config",),
    },
)
