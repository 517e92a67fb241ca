"""`sparsity.series` split by checkpoint: each shard diffs its checkpoints against the base, the
reduce builds the series tables.

A shard takes exactly the diffs the unsplit series takes (engine.sparsity.series.series_configs)
and leaves them in the artifact cache, which sits beside the job folders and is seen by every
SLURM node that sees them. The reduce is then the unsplit job itself: every diff it asks for is
a cache hit, so it writes the same files with the same numbers, and only compares masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.jobs import JobContext, consecutive, get_kind, splits

KIND = "sparsity.series"


def plan(params: dict[str, Any], wanted: int) -> list[dict[str, Any]]:
    """Consecutive runs of the run's checkpoints, at most `wanted` shards, none empty."""
    from engine.sparsity.series import list_checkpoints

    checkpoints = [str(path) for _, path in list_checkpoints(params["run_dir"])]
    return [{**params, "checkpoints": group} for group in consecutive(checkpoints, wanted)]


def reduce(params: dict[str, Any], shard_results: list[Path], ctx: JobContext) -> Any:
    """The unsplit `sparsity.series` over the diffs the shards cached."""
    from engine.jobs.files import read_json

    missing = [
        row["checkpoint"]
        for result in shard_results
        for row in (read_json(result / "diffs.json") or {}).get("diffs", [])
        if row["cached"] and not Path(row["cached"]).is_dir()
    ]
    if missing:  # evicted meanwhile: the series diffs them again, slower but the same
        ctx.log(f"{len(missing)} shard diffs are no longer cached; diffing them again")
    return get_kind(KIND).run(params, ctx)


@splits(KIND, plan=plan, reduce=reduce)
def series_shard(params: dict[str, Any], ctx: JobContext) -> dict:
    """Diff this shard's checkpoints against the base, into the artifact cache."""
    from engine.sparsity.diff import diff
    from engine.sparsity.jobs import _config  # the unsplit kind's own reading of the params
    from engine.sparsity.resolve import open_source
    from engine.sparsity.series import series_configs

    configs = []
    for config in series_configs(_config(params)):
        if config not in configs:
            configs.append(config)
    base = open_source(params["base"])
    checkpoints = list(params["checkpoints"])
    rows = []
    for i, checkpoint in enumerate(checkpoints):
        for c, config in enumerate(configs):
            ctx.progress(
                (i * len(configs) + c) / (len(checkpoints) * len(configs)),
                f"{Path(checkpoint).name} ({config.mask_criterion})",
            )
            result = diff(base, checkpoint, config)
            rows.append(
                {
                    "checkpoint": checkpoint,
                    "mask_criterion": config.mask_criterion,
                    "cached": str(result.path) if result.path else None,
                }
            )
    ctx.write_json("diffs.json", {"diffs": rows})
    return {"checkpoints": len(checkpoints), "diffs": len(rows)}
