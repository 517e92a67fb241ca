"""`attribution.seeds`: attribution scores averaged over several text draws (seeds); split, one
shard per group of seeds.

Seed 002 scores the general text over several seeds and averages them (load_and_average_seeds;
engine.attribution.scores.average_scores). The job writes `seed<s>.safetensors` per seed and
their mean as `scores.safetensors`, which every reader of attribution scores takes. Split, each
shard writes its seeds' files; the reduce copies them and takes the same mean, in seed order:
the same files with the same numbers.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from engine.attribution.config import ComputeConfig
from engine.errors import SubnetScopeError
from engine.jobs import JobContext, consecutive, job, splits

KIND = "attribution.seeds"
SCORES_FILE = "scores.safetensors"  # the mean, where attribution.compute writes its scores


def _seed_file(seed: int) -> str:
    return f"seed{seed}.safetensors"


def _config(params: dict[str, Any]) -> tuple[ComputeConfig, list[int]]:
    params = dict(params)
    seeds = params.pop("seeds", None)
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise SubnetScopeError("attribution.seeds needs 'seeds': a list of whole numbers")
    if len(set(seeds)) != len(seeds):
        raise SubnetScopeError("attribution.seeds: every seed once")
    known = {f.name for f in fields(ComputeConfig)} - {"seed"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise SubnetScopeError(f"attribution.seeds: unknown option {', '.join(unknown)}")
    return ComputeConfig(**params), seeds


def _mean(per_seed: list, seeds: list[int], ctx: JobContext) -> dict:
    from engine.attribution.scores import average_scores

    for scores in per_seed:
        scores.metadata.pop("path", None)  # loaded from a shard's file: its seed names it
    mean = average_scores(per_seed)
    mean.save(ctx.result_path(SCORES_FILE))
    return {
        "method": mean.method,
        "seeds": seeds,
        "tokens": mean.metadata["tokens"],
        "total": mean.total(),
    }


def _score_seeds(params: dict[str, Any], ctx: JobContext) -> list:
    from engine.attribution.compute import compute_scores

    config, seeds = _config(params)
    per_seed = []
    for i, seed in enumerate(seeds):

        def report(f: float, m: str, i: int = i, seed: int = seed) -> None:
            ctx.progress(0.95 * (i + f) / len(seeds), f"seed {seed}: {m}")

        # Each seed loads its model, as each array task must: the unsplit run is the same work.
        scores = compute_scores(replace(config, seed=seed), progress=report)
        scores.save(ctx.result_path(_seed_file(seed)))
        per_seed.append(scores)
    return per_seed


@job(
    KIND,
    title="Attribution scores averaged over seeds (LRP or Wanda)",
    result_page="pruning",
    defaults={
        **{k: v for k, v in asdict(ComputeConfig()).items() if k != "seed"},
        "seeds": [0, 1, 2],
    },
)
def attribution_seeds(params: dict[str, Any], ctx: JobContext) -> dict:
    """Score the text source once per seed, then average (seed 002's general scores)."""
    _, seeds = _config(params)
    return _mean(_score_seeds(params, ctx), seeds, ctx)


def plan(params: dict[str, Any], wanted: int) -> list[dict[str, Any]]:
    """Consecutive groups of the seeds, at most `wanted`."""
    _, seeds = _config(params)
    return [{**params, "seeds": group} for group in consecutive(seeds, wanted)]


def reduce(params: dict[str, Any], shard_results: list[Path], ctx: JobContext) -> dict:
    """Copy the seeds' files and average them in seed order."""
    from engine.attribution.scores import load_scores

    _, seeds = _config(params)
    found = {p.name: p for result in shard_results for p in result.glob("seed*.safetensors")}
    per_seed = []
    for seed in seeds:
        name = _seed_file(seed)
        if name not in found:
            raise SubnetScopeError(f"no shard wrote the scores of seed {seed}")
        target = ctx.result_path(name)
        tmp = target.with_name(f".{name}.tmp")
        shutil.copyfile(found[name], tmp)
        os.replace(tmp, target)
        per_seed.append(load_scores(found[name]))
    return _mean(per_seed, seeds, ctx)


@splits(KIND, plan=plan, reduce=reduce)
def seeds_shard(params: dict[str, Any], ctx: JobContext) -> dict:
    """This shard's seeds, one scores file each."""
    per_seed = _score_seeds(params, ctx)
    return {"seeds": params["seeds"], "tokens": [s.metadata["tokens"] for s in per_seed]}
