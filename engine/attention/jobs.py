"""Job kinds `attention.sweep` (the loss of making each global layer local) and
`attention.context` (the head statistics against text length)."""

from __future__ import annotations

from typing import Any

from engine.attention.config import CONTEXT_KIND, SWEEP_KIND, ContextConfig, SweepConfig
from engine.jobs import JobContext, job

SWEEP_FILE, BASELINE_FILE, LAYOUT_FILE = "sweep.parquet", "baseline.json", "layout.parquet"
CONTEXT_FILE, TIMING_FILE = "context.parquet", "timing.parquet"


@job(
    SWEEP_KIND,
    title="Localize sweep: the loss of making each global attention layer local",
    result_page="attention",
    defaults=SweepConfig().to_params(),
    mem_gb=1.5,  # measured on the demo model: 1.18 GB peak (VmHWM), the demo part
)
def sweep_job(params: dict[str, Any], ctx: JobContext) -> dict:
    """Baseline NLL over token windows of a text source, then the NLL with each chosen global
    layer made local (engine.attention.localize) at each window width; layers ranked by the loss."""
    from engine.attention.sweep import run_sweep

    config = SweepConfig.from_params(params, what="attention.sweep")  # errors before the model
    result = run_sweep(config, progress=ctx.progress)
    ctx.write_table(SWEEP_FILE, result.frame)
    ctx.write_table(LAYOUT_FILE, result.layout)
    ctx.write_json(BASELINE_FILE, result.baseline)
    for row in result.frame.itertuples():
        ctx.metric("delta_nll", row.delta_nll, step=row.layer, window=row.window)
    return result.summary()


@job(
    CONTEXT_KIND,
    title="Attention against context length: head statistics at each text length",
    result_page="attention",
    defaults=ContextConfig().to_params(),
    mem_gb=2.0,  # measured on the demo model: 1.53 GB peak (VmHWM), 128 → 2048 tokens
)
def context_job(params: dict[str, Any], ctx: JobContext) -> dict:
    """Per-head statistics of the same long texts cut at each length, and the time each took."""
    from engine.attention.context import run_context

    config = ContextConfig.from_params(params, what="attention.context")
    result = run_context(config, progress=ctx.progress)
    ctx.write_table(CONTEXT_FILE, result.frame)
    ctx.write_table(TIMING_FILE, result.timing)
    ctx.write_table(LAYOUT_FILE, result.layout)
    for row in result.timing.itertuples():
        ctx.metric("seconds", row.seconds, step=row.length)
    return result.summary()
