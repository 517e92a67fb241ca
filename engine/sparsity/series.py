"""A run's checkpoints against the base: update fraction over steps and coverage of the final mask.

Coverage at step t (seed 000's analyze_sparse_subnetwork.py) is |M_t ∧ M_final| / |M_final|:
the share of the weights changed by the end that were already changed at step t. Each
checkpoint's diff is cached on its own, so a live run only diffs the checkpoints that are new.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from engine.errors import SubnetScopeError
from engine.sparsity.config import DiffConfig
from engine.sparsity.diff import DiffResult, diff
from engine.sparsity.masks import overlap_table, overlap_totals
from engine.sparsity.sources import WeightSource, open_source

if TYPE_CHECKING:
    from engine.cache import ArtifactStore

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The run's `checkpoint-<step>/` folders, by step."""
    root = Path(run_dir).expanduser()
    if not root.is_dir():
        raise SubnetScopeError(f"no run folder at '{run_dir}'")
    found = [
        (int(m[1]), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    ]
    if not found:
        raise SubnetScopeError(f"'{run_dir}' has no checkpoint-<step> folders")
    return sorted(found)


@dataclass
class SeriesResult:
    """Per checkpoint: the diff against the base, its changed fraction and its coverage."""

    steps: pd.DataFrame  # step, checkpoint, changed, fraction, coverage, jaccard_prev, ...
    layers: pd.DataFrame  # step, layer, changed, fraction, coverage
    diffs: dict[int, DiffResult]

    def summary(self) -> dict[str, Any]:
        return {"steps": self.steps.to_dict(orient="records")}


def series(
    base: str | Path | WeightSource,
    run_dir: str | Path,
    config: DiffConfig | None = None,
    *,
    cache: bool = True,
    store: ArtifactStore | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> SeriesResult:
    """Diff every checkpoint of a run against the base and trace coverage of the final mask."""
    config = config or DiffConfig()
    if not config.masks:
        raise SubnetScopeError("a series needs update masks; leave DiffConfig.masks on")
    checkpoints = list_checkpoints(run_dir)
    base_src = open_source(base)
    diffs: dict[int, DiffResult] = {}
    for i, (step, path) in enumerate(checkpoints):
        if progress is not None:
            progress(i / len(checkpoints), f"checkpoint {step}")
        diffs[step] = diff(base_src, path, config, cache=cache, store=store)
    final = diffs[checkpoints[-1][0]]
    rows, layer_rows = [], []
    previous = None
    for step, path in checkpoints:
        result = diffs[step]
        overlap = overlap_table(result.masks, final.masks)
        totals = overlap_totals(overlap)
        row = {
            "step": step,
            "checkpoint": str(path),
            "numel": int(overlap["numel"].sum()),
            "changed": totals["a"],
            "fraction": totals["a"] / overlap["numel"].sum(),
            "coverage": totals["coverage"],  # of the final mask by this step's
            "jaccard_final": totals["jaccard"],
        }
        if previous is not None:
            row["jaccard_prev"] = overlap_totals(overlap_table(previous.masks, result.masks))[
                "jaccard"
            ]
        rows.append(row)
        places = result.tensors.drop_duplicates("tensor")[["tensor", "layer"]]
        by_layer = (
            overlap.merge(places, on="tensor")
            .groupby("layer", as_index=False)[["numel", "a", "b", "both"]]
            .sum()
        )
        by_layer["fraction"] = by_layer["a"] / by_layer["numel"]
        by_layer["coverage"] = by_layer["both"] / by_layer["b"].where(by_layer["b"] > 0)
        by_layer.insert(0, "step", step)
        layer_rows.append(by_layer.rename(columns={"a": "changed", "b": "final_changed"}))
        previous = result
    if progress is not None:
        progress(1.0, f"{len(checkpoints)} checkpoints compared")
    steps = pd.DataFrame(rows)
    if "jaccard_prev" not in steps:
        steps["jaccard_prev"] = float("nan")
    return SeriesResult(steps=steps, layers=pd.concat(layer_rows, ignore_index=True), diffs=diffs)
