"""The capacity meter's sweep: every size × N × precision × seed trained and measured, then the
capacity of each size (the plateau of memorized bits over N) and its bits per parameter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from engine.capacity.config import PAPER_BITS_PER_PARAM, MeterConfig, size_label
from engine.capacity.model import parameter_count

RUN_COLUMNS = [
    "size",
    "layers",
    "width",
    "params",
    "n",
    "precision",
    "seed",
    "data_bits",
    "nll_bits",
    "memorized_bits",
    "mem_u_bits",
    "best_step",
    "steps",
    "converged",
    "seconds",
]
CAPACITY_COLUMNS = [
    "size",
    "layers",
    "width",
    "params",
    "precision",
    "capacity_bits",
    "bits_per_param",
    "n_at_max",
    "data_bits_at_max",
    "saturated",
    "runs",
    "converged_runs",
    "paper_bits_per_param",
]
SATURATED = 0.9  # memorized < 90 % of the data's bits at the max: the model, not the data, limits


def capacity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per size × precision: memorized bits averaged over seeds at each N, the capacity = their
    maximum over N (the paper's Def. 5 on this data), bits per parameter, the N of the maximum,
    and `saturated`: whether the model, not the data, set that maximum (a capacity read where
    the data was smaller is only a lower bound)."""
    rows = []
    keys = ["size", "layers", "width", "params", "precision"]
    for key, group in runs.groupby(keys, sort=False):
        by_n = group.groupby("n").agg(
            memorized_bits=("memorized_bits", "mean"), data_bits=("data_bits", "first")
        )
        at = by_n["memorized_bits"].idxmax()
        capacity = float(by_n.loc[at, "memorized_bits"])
        record = dict(zip(keys, key, strict=True))
        rows.append(
            {
                **record,
                "capacity_bits": capacity,
                "bits_per_param": capacity / record["params"],
                "n_at_max": int(at),
                "data_bits_at_max": float(by_n.loc[at, "data_bits"]),
                "saturated": bool(capacity < SATURATED * by_n.loc[at, "data_bits"]),
                "runs": len(group),
                "converged_runs": int(group["converged"].sum()),
                "paper_bits_per_param": PAPER_BITS_PER_PARAM[record["precision"]],
            }
        )
    return pd.DataFrame(rows, columns=CAPACITY_COLUMNS)


@dataclass
class MeterResult:
    runs: pd.DataFrame  # RUN_COLUMNS
    capacity: pd.DataFrame  # CAPACITY_COLUMNS

    def summary(self) -> dict[str, Any]:
        parts = [
            f"{r.size} {r.precision}: {r.bits_per_param:.2f} bits/param"
            + ("" if r.saturated else " (data-limited: a lower bound)")
            for r in self.capacity.itertuples()
        ]
        return {
            "runs": len(self.runs),
            "converged": int(self.runs["converged"].sum()),
            "bits_per_param": {
                f"{r.size} {r.precision}": round(float(r.bits_per_param), 4)
                for r in self.capacity.itertuples()
            },
            "message": "; ".join(parts),
        }


def planned_runs(config: MeterConfig) -> list[tuple[int, int, int, str, int]]:
    """(layers, width, n, precision, seed) in the order they train: small models first."""
    return [
        (layers, width, n, precision, seed)
        for layers, width in sorted(config.sizes, key=lambda s: parameter_count(*s, 2, 1))
        for precision in config.precisions
        for n in config.n
        for seed in config.seeds
    ]


def run_meter(
    config: MeterConfig,
    progress: Callable[..., None] | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    on_eval: Callable[[str, int, Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MeterResult:
    """Train and measure every planned run; `on_run` gets each finished row, `on_eval` each
    measurement (run label, step, Memorized)."""
    from engine.capacity.train import TrainOptions, train_run

    options = TrainOptions(
        length=config.length,
        vocab=config.vocab,
        steps=config.max_steps,
        eval_every=config.eval_every,
        patience=config.patience,
        tol=config.tol,
        lr=config.lr,
        lr_drops=config.lr_drops,
        batch=config.batch,
    )
    plan = planned_runs(config)
    rows = []
    for i, (layers, width, n, precision, seed) in enumerate(plan):
        label = f"{size_label(layers, width)} {precision} N={n} seed {seed}"
        if progress is not None:
            progress(i / len(plan), f"run {i + 1}/{len(plan)}: {label}")
        row = train_run(
            layers,
            width,
            n,
            precision,
            seed,
            options,
            on_eval=None if on_eval is None else lambda step, m, lb=label: on_eval(lb, step, m),
            should_stop=should_stop,
        )
        row["size"] = size_label(layers, width)
        rows.append(row)
        if on_run is not None:
            on_run(row)
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    if progress is not None:
        progress(1.0, f"{len(plan)} runs done")
    return MeterResult(runs, capacity_table(runs))
