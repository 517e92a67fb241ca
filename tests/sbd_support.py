"""A tiny SBD fine-tune for tests: an `sbd.train` job run in this process on a tiny model."""

from __future__ import annotations

from typing import Any

# A tiny Llama learns nothing in 3 steps: runs of these params check the plumbing, not numbers.
TINY_RUN: dict[str, Any] = {
    "dataset": "demo-arithmetic",
    "template": "basic",
    "steps": 3,
    "batch_size": 4,
    "max_length": 40,
    "eval_texts": 5,
    "eval_examples": 3,
    "thresholds": [0.0, 1.0],
    "max_new_tokens": 8,
    "report_to": "none",
}


def run_tiny_sbd(model: str, **params: Any) -> str:
    """An `sbd.train` job on the model folder `model`, run in this process and marked succeeded
    (local jobs must be held: tests.job_support.hold_local_jobs); returns its id."""
    from tests.generator_support import run_job

    return run_job("sbd.train", {**TINY_RUN, "model": model, **params})


def save_tiny_sbd(folder: Any, seed: int = 1) -> None:
    """A tiny Llama with the SBD mask token added (untrained: the decoders run, nothing is
    learned), saved with its tokenizer as a model folder."""
    import copy

    from engine.sbd.train import add_mask_token
    from tests.tiny import tiny_model

    loaded = tiny_model("llama", seed=seed)
    tokenizer = copy.deepcopy(loaded.tokenizer)  # the tiny models share one tokenizer
    add_mask_token(loaded.model, tokenizer)
    loaded.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
