"""A run's checkpoints against the base: update fraction over steps and coverage of the final mask.

Coverage at step t (seed 000's analyze_sparse_subnetwork.py) is |M_t ∧ M_final| / |M_final|:
the share of the weights changed by the end that were already changed at step t. Each
checkpoint's diff is cached on its own, so a live run only diffs the checkpoints that are new.

Two coverages, labelled apart: `steps` over every tensor under the diff's mask criterion, and
`seed` as analyze_sparse_subnetwork.py computes it — only the 2-D weights whose names hold
attn / mlp / c_attn / c_proj / c_fc / lm_head, |ΔW| > τ in float32, at each of its τ = 1e-7,
1e-6, 1e-5.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from engine.errors import SubnetScopeError
from engine.sparsity.config import DiffConfig, tolerance_key
from engine.sparsity.diff import DiffResult, diff
from engine.sparsity.localization import GPT2_NAME_FILTER
from engine.sparsity.masks import overlap_table, overlap_totals
from engine.sparsity.resolve import open_source
from engine.sparsity.sources import WeightSource

if TYPE_CHECKING:
    from engine.cache import ArtifactStore

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
SEED_TAUS = (1e-7, 1e-6, 1e-5)  # analyze_sparse_subnetwork.py's TAUS
SEED_NAME_TOKENS = GPT2_NAME_FILTER  # analyze_sparse_subnetwork.py's tokens, for every model
_TIED_EMBEDDINGS = ("embed_tokens.weight", "wte.weight")
SEED_COLUMNS = ["step", "tau", "numel", "changed", "fraction", "final_changed", "coverage"]


def seed_tracked(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The tensors analyze_sparse_subnetwork.py tracks: 2-D, name ending in `weight` and holding
    one of its tokens. Its checkpoints are `state_dict()`s, which list a tied lm_head under its
    own name; a safetensors save drops that copy, so the tied embedding stands in for it."""
    names = [
        n
        for n, shape in shapes.items()
        if n.endswith("weight") and len(shape) == 2 and any(t in n for t in SEED_NAME_TOKENS)
    ]
    if not any("lm_head" in n for n in names):
        names += [n for n, s in shapes.items() if n.endswith(_TIED_EMBEDDINGS) and len(s) == 2]
    return sorted(names)


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
    # The seed's coverage: step, tau, numel, changed, fraction, final_changed, coverage.
    seed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SEED_COLUMNS))

    def summary(self) -> dict[str, Any]:
        return {
            "steps": self.steps.to_dict(orient="records"),
            "seed_coverage": self.seed.to_dict(orient="records"),
        }


def _seed_rows(
    diffs: Mapping[int, DiffResult], tau: float, steps: list[int]
) -> list[dict[str, Any]]:
    final = diffs[steps[-1]]
    tracked = seed_tracked(final.masks.shapes)
    rows = []
    for step in steps:
        table = overlap_table(diffs[step].masks, final.masks, tracked)
        totals = overlap_totals(table)
        numel = int(table["numel"].sum())
        rows.append(
            {
                "step": step,
                "tau": tau,
                "numel": numel,
                "changed": totals["a"],
                "fraction": totals["a"] / numel if numel else float("nan"),
                "final_changed": totals["b"],
                "coverage": totals["coverage"],
            }
        )
    return rows


def series_configs(
    config: DiffConfig, seed_taus: tuple[float, ...] = SEED_TAUS
) -> list[DiffConfig]:
    """The diffs a series takes of each checkpoint: `config`, then one per seed τ (the same
    `config` where τ is its mask criterion). A split series (engine.sparsity.shards) takes the
    same ones, so its reduce finds every diff in the cache."""
    configs = [config]
    for tau in seed_taus:
        taus = tuple({*config.tolerances, float(tau)})
        configs.append(
            config
            if tolerance_key(tau) == config.mask_criterion
            else replace(
                config,
                tolerances=taus,
                mask_criterion=tolerance_key(tau),
                ranks=False,
                reference=False,
            )
        )
    return configs


def series(
    base: str | Path | WeightSource,
    run_dir: str | Path,
    config: DiffConfig | None = None,
    *,
    cache: bool = True,
    store: ArtifactStore | None = None,
    progress: Callable[[float, str], None] | None = None,
    seed_taus: tuple[float, ...] = SEED_TAUS,
) -> SeriesResult:
    """Diff every checkpoint of a run against the base and trace coverage of the final mask,
    and the seed's coverage of its tracked tensors at each of `seed_taus` (() skips it: each τ
    that is not the mask criterion costs one more cached diff per checkpoint)."""
    config = config or DiffConfig()
    if not config.masks:
        raise SubnetScopeError("a series needs update masks; leave DiffConfig.masks on")
    checkpoints = list_checkpoints(run_dir)
    base_src = open_source(base)
    configs = series_configs(config, seed_taus)
    runs: list[dict[int, DiffResult]] = []
    total = len(checkpoints) * len(configs)
    for c, cfg in enumerate(configs):
        found: dict[int, DiffResult] = {}
        for i, (step, path) in enumerate(checkpoints):
            if progress is not None:
                progress((c * len(checkpoints) + i) / total, f"checkpoint {step}")
            if c and cfg is config:
                found[step] = runs[0][step]
            else:
                found[step] = diff(base_src, path, cfg, cache=cache, store=store)
        runs.append(found)
    diffs = runs[0]
    steps_in_order = [step for step, _ in checkpoints]
    seed_rows = [
        row
        for tau, found in zip(seed_taus, runs[1:], strict=True)
        for row in _seed_rows(found, float(tau), steps_in_order)
    ]
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
    return SeriesResult(
        steps=steps,
        layers=pd.concat(layer_rows, ignore_index=True),
        diffs=diffs,
        seed=pd.DataFrame(seed_rows, columns=SEED_COLUMNS),
    )
