"""Job kinds of the sparsity area: a diff or a run's series out of process, for large models."""

from __future__ import annotations

from typing import Any

from engine.jobs import JobContext, job
from engine.sparsity.config import DEFAULT_TOLERANCES, DiffConfig

_CONFIG_DEFAULTS = {
    "tolerances": list(DEFAULT_TOLERANCES),
    "mask_criterion": "auto",
    "ranks": False,
    "intersection": False,
    "reference": False,  # also the seed's check_sparsity.py numbers (bf16 cast, isclose)
    "reference_dtype": "bfloat16",
}


def _config(params: dict[str, Any]) -> DiffConfig:
    return DiffConfig(
        tolerances=tuple(params["tolerances"]),
        mask_criterion=params["mask_criterion"],
        ranks=bool(params["ranks"]),
        intersection=bool(params["intersection"]),
        reference=bool(params.get("reference", False)),
        reference_dtype=str(params.get("reference_dtype", DiffConfig.reference_dtype)),
    )


@job(
    "sparsity.diff",
    title="Sparsity diff: which weights moved",
    result_page="sparsity",
    defaults={"base": "demo", "tuned": None, **_CONFIG_DEFAULTS},
)
def sparsity_diff(params: dict[str, Any], ctx: JobContext) -> dict:
    """Diff `tuned` against `base`; the result lands in the artifact cache (`result_dir`)."""
    from engine.sparsity import diff

    result = diff(params["base"], params["tuned"], _config(params), progress=ctx.progress)
    for criterion, total in result.summary["changed"].items():
        ctx.metric(f"fraction/{criterion}", total["fraction"])
    if "reference" in result.summary:
        for tau, fraction in result.summary["reference"]["changed_fraction"].items():
            ctx.metric(f"reference_fraction/{tau}", fraction)
    summary = result.summary | {"result_dir": str(result.path) if result.path else None}
    ctx.write_json("summary.json", summary)
    ctx.write_table("tensors.parquet", result.tensors)
    keys = ("base", "tuned", "changed", "result_dir", "reference")
    return {k: summary[k] for k in keys if k in summary}


@job(
    "sparsity.series",
    title="Sparsity series: coverage over a run's checkpoints",
    result_page="sparsity",
    defaults={"base": "demo", "run_dir": None, **_CONFIG_DEFAULTS},
)
def sparsity_series(params: dict[str, Any], ctx: JobContext) -> dict:
    """Diff every checkpoint of a run against the base; coverage of the final mask per step."""
    from engine.sparsity import series

    result = series(params["base"], params["run_dir"], _config(params), progress=ctx.progress)
    for row in result.steps.itertuples():
        ctx.metric("fraction", row.fraction, step=row.step)
        ctx.metric("coverage", row.coverage, step=row.step)
    ctx.write_table("steps.parquet", result.steps)
    ctx.write_table("layers.parquet", result.layers)
    for row in result.seed.itertuples():  # the seed's own coverage (its tensors, three τ)
        ctx.metric(f"seed_coverage/{row.tau:g}", row.coverage, step=row.step)
    ctx.write_table("seed_coverage.parquet", result.seed)
    return result.summary()
