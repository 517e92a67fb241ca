"""A TrainerCallback that checkpoints every k steps, logs sparsity against the base, reports
progress and metrics to the job, and stops the run when the job is cancelled."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from engine.jobs import JobCancelled, JobContext
from engine.sparsity import DiffConfig, diff


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step}"  # the layout engine.sparsity.series reads


class SparsityCallback(TrainerCallback):
    """Holds the model to save (the policy, unwrapped) and the base folder to diff against."""

    def __init__(
        self, ctx: JobContext, base_dir: Path, every: int, tolerance: float, total_steps: int
    ) -> None:
        self.ctx, self.base_dir, self.every = ctx, base_dir, every
        self.config = DiffConfig(tolerances=(tolerance,))
        self.total_steps = total_steps
        self.model = None  # set once the trainer has built (and maybe wrapped) it
        self.checkpoints: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        for name, value in (logs or {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                self.ctx.metric(f"train/{name}", value, step=state.global_step)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        step = state.global_step
        if self.ctx.cancelled():
            raise JobCancelled(f"cancelled at step {step}")
        if step % self.every == 0 or step >= self.total_steps:
            self.save(step)
        rate = step / max(time.monotonic() - self.started, 1e-9)
        self.ctx.progress(
            0.05 + 0.9 * step / self.total_steps,
            f"step {step}/{self.total_steps} ({rate:.2f} steps/s)",
        )

    def save(self, step: int) -> dict[str, Any]:
        if any(c["step"] == step for c in self.checkpoints):
            return next(c for c in self.checkpoints if c["step"] == step)
        folder = self.ctx.result_dir / checkpoint_name(step)
        self.model.save_pretrained(str(folder), safe_serialization=True)
        result = diff(self.base_dir, folder, self.config)
        entry = {"step": step, "path": str(folder), **log_sparsity(self.ctx, result, step)}
        self.checkpoints.append(entry)
        return entry


def log_sparsity(ctx: JobContext, result, step: int) -> dict[str, float]:
    """The diff's headline numbers as metric events at `step`; per-layer shares with layer=i."""
    summary = result.summary
    criterion = result.config.mask_criterion
    numbers = {
        "changed_fraction": summary["changed"][criterion]["fraction"],
        "exact_fraction": summary["changed"]["exact"]["fraction"],
        "bf16_fraction": summary["changed"]["bf16"]["fraction"],
        "rel_norm": summary["rel_norm"],
        "gini": summary["localization"]["gini"],
        "entropy": summary["localization"]["entropy"],
        "top_k": summary["localization"]["top_k"],
    }
    for name, value in numbers.items():
        ctx.metric(name, value, step=step, tolerance=criterion)
    layers = summary["layers"]
    changed = result.layers(criterion)["changed"].to_numpy()
    total = changed.sum()
    for layer, fraction, count in zip(
        layers["layer"], layers["fraction"][criterion], changed, strict=True
    ):
        share = float(count / total) if total else 0.0
        ctx.metric("layer_fraction", fraction, step=step, layer=int(layer), share=share)
    return numbers
