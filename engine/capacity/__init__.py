"""Memorization capacity: GPT-2 sizes trained on uniformly random tokens, the bits they memorize
and the bits per parameter (Morris et al., arXiv 2505.24832 §3; seed 003)."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.capacity.jobs` stays light.
__all__ = attach(
    __name__,
    {
        "config": (
            "CAPACITY_FILE",
            "KIND",
            "PAPER_BITS_PER_PARAM",
            "PAPER_FIT",
            "PRECISIONS",
            "RUNS_FILE",
            "MeterConfig",
            "size_label",
        ),
        "model": ("parameter_count",),
        "meter": ("Memorized", "dataset_bits", "memorized_bits", "random_sequences"),
        "sweep": ("MeterResult", "capacity_table", "run_meter"),
        "catalog": ("meter_results",),
    },
)
