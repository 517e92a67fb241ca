"""Evaluations of a model on text: sliding-window perplexity (toxicity joins with pruning)."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.evaluation.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "perplexity": ("PerplexityResult", "perplexity", "sliding_window_nll"),
    },
)
