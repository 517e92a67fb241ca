"""Set Block Decoding (Gat, Ben-Hamu et al., arXiv 2509.04185; seed 003): fine-tune a model to
fill blocks of masked future tokens, decode several tokens per forward pass, and measure the
forward passes saved against autoregressive decoding and what they cost in quality."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.sbd.jobs` stays light.
__all__ = attach(
    __name__,
    {
        "config": (
            "DEMO_SBD",
            "EVAL_FILE",
            "EVAL_KIND",
            "EVAL_SUMMARY",
            "MODEL_DIR",
            "PAPER_THRESHOLDS",
            "RUN_JSON",
            "SAMPLES_FILE",
            "TRAIN_KIND",
            "EvalConfig",
            "SBDConfig",
        ),
        "catalog": ("evaluations", "find_run", "run_label", "sbd_runs"),
        "evaluate": (
            "answer_correct",
            "arithmetic_examples",
            "evaluate_run",
            "evaluation_summary",
            "trade_off_table",
        ),
        "objective": ("SBDBatch", "sbd_batch", "sbd_loss"),
        "train": ("add_mask_token", "run_sbd"),
    },
)
