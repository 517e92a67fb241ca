"""TrainerCallbacks for job runs: progress, loss metrics and cancel (`JobProgress`), plus a
checkpoint every k steps with its sparsity (and optionally update ranks) against the base
(`SparsityCallback`), and the run's training diagnostics (`DiagnosticsCallback`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import TrainerCallback

from engine.atomic import atomic_dir
from engine.jobs import JobCancelled, JobContext
from engine.sparsity import DiffConfig, diff
from engine.training.diagnostics import TrainingDiagnostics, diagnostics_for

UPDATE_RANKS = "update_ranks.parquet"  # per checkpoint and 2-D tensor: ranks of ΔW = W_k − W_0


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step}"  # the layout engine.sparsity.series reads


class JobProgress(TrainerCallback):
    """Reports the trainer's logs as metrics and its steps as progress in [start, start + span];
    stops the run when the job is cancelled. Subclasses act at each step through `at_step`."""

    def __init__(
        self, ctx: JobContext, total_steps: int, *, start: float = 0.05, span: float = 0.9
    ) -> None:
        self.ctx, self.total_steps, self.start, self.span = ctx, total_steps, start, span
        self.model = None  # set once the trainer has built (and maybe wrapped) it
        self.started = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        for name, value in (logs or {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                self.ctx.metric(f"train/{name}", value, step=state.global_step)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        step = state.global_step
        if self.ctx.cancelled():
            raise JobCancelled(f"cancelled at step {step}")
        self.at_step(step)
        rate = step / max(time.monotonic() - self.started, 1e-9)
        self.ctx.progress(
            self.start + self.span * step / self.total_steps,
            f"step {step}/{self.total_steps} ({rate:.2f} steps/s)",
        )

    def at_step(self, step: int) -> None:
        """Work due after optimizer step `step` (nothing by default)."""


class SparsityCallback(JobProgress):
    """Holds the model to save (the policy, unwrapped) and the base folder to diff against.

    With `ranks`, every checkpoint also gets the classical, effective and stable rank of each
    2-D ΔW (seed 000's main_ppo logs them beside the sparsity): the means go out as
    `rank/classical_ratio`, `rank/effective`, `rank/stable`, the rows to `update_ranks.parquet`.
    """

    def __init__(
        self,
        ctx: JobContext,
        base_dir: Path,
        every: int,
        tolerance: float,
        total_steps: int,
        *,
        ranks: bool = False,
    ) -> None:
        super().__init__(ctx, total_steps)
        self.base_dir, self.every = base_dir, every
        self.config = DiffConfig(tolerances=(tolerance,), ranks=ranks)
        self.checkpoints: list[dict[str, Any]] = []
        self.rank_tables: list[pd.DataFrame] = []

    def at_step(self, step: int) -> None:
        if step % self.every == 0 or step >= self.total_steps:
            self.save(step)

    def save(self, step: int) -> dict[str, Any]:
        if any(c["step"] == step for c in self.checkpoints):
            return next(c for c in self.checkpoints if c["step"] == step)
        folder = self.ctx.result_dir / checkpoint_name(step)
        with atomic_dir(folder) as tmp:
            self.model.save_pretrained(str(tmp), safe_serialization=True)
        result = diff(self.base_dir, folder, self.config)
        entry = {"step": step, "path": str(folder), **log_sparsity(self.ctx, result, step)}
        if self.config.ranks:
            entry |= self._log_ranks(result.ranks, step)
        self.checkpoints.append(entry)
        return entry

    def _log_ranks(self, ranks: pd.DataFrame, step: int) -> dict[str, float]:
        done = ranks[ranks["method"] == "svd"]
        if done.empty:
            return {}
        numbers = {
            "rank/classical_ratio": float((done["rank"] / done["max_rank"]).astype(float).mean()),
            "rank/effective": float(done["effective_rank"].mean()),
            "rank/stable": float(done["stable_rank"].mean()),
        }
        for name, value in numbers.items():
            self.ctx.metric(name, value, step=step)
        self.rank_tables.append(ranks.assign(step=step))
        self.ctx.write_table(UPDATE_RANKS, pd.concat(self.rank_tables, ignore_index=True))
        return numbers


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
        "top_k": summary["localization"]["top_k"],  # changed weights per block
        # seed 000's own basis: per-tensor ‖ΔW‖_F of its tracked tensors (does not depend on τ)
        **{f"seed_{m}": summary["localization_seed"][m] for m in ("gini", "entropy", "top_k")},
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


def trained_model(model: Any) -> Any:
    """The causal LM inside what a trainer hands its callbacks: DDP's `.module` and PPO's
    policy-and-value wrapper (`.policy`) taken off."""
    model = getattr(model, "module", model)
    return getattr(model, "policy", model)


class DiagnosticsCallback(TrainerCallback):
    """Drives `TrainingDiagnostics` from a TRL trainer: armed at the end of the step before a
    due step (or at train begin), so a step's window covers all of its forward and backward
    passes and optimizer steps; the same events exist in every TRL trainer, PPO's own loop
    included (it has no on_step_begin / on_pre_optimizer_step)."""

    def __init__(self, diagnostics: TrainingDiagnostics) -> None:
        self.diagnostics = diagnostics

    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        self.diagnostics.begin(trained_model(model))
        self.diagnostics.before_step(state.global_step + 1)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.diagnostics.after_step(state.global_step)
        if not state.max_steps or state.global_step < state.max_steps:
            self.diagnostics.before_step(state.global_step + 1)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self.diagnostics.close()


def diagnostics_callbacks(config: Any, ctx: JobContext, **texts: Any) -> list[TrainerCallback]:
    """[DiagnosticsCallback] when the run's config asks for diagnostics, else []; `texts`:
    tokenizer, train, heldout (engine.training.diagnostics.diagnostics_for)."""
    diagnostics = diagnostics_for(config, ctx, **texts)
    return [] if diagnostics is None else [DiagnosticsCallback(diagnostics)]
