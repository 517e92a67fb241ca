"""Evaluations of a model on text: sliding-window perplexity (toxicity joins with pruning)."""

from engine.evaluation.perplexity import PerplexityResult, perplexity, sliding_window_nll

__all__ = ["PerplexityResult", "perplexity", "sliding_window_nll"]
