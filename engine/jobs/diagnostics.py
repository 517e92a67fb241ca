"""Diagnostic job kinds: check that a backend runs, reports progress, fails and cancels."""

from __future__ import annotations

import time
from typing import Any

from engine.errors import SubnetScopeError
from engine.jobs.context import JobContext
from engine.jobs.registry import job


@job(
    "diagnostics.sleep",
    title="Sleep with progress",
    defaults={"seconds": 5.0, "steps": 10},
    mem_gb=0.3,
)
def sleep(params: dict[str, Any], ctx: JobContext) -> dict:
    """Sleep `seconds` in `steps`, reporting progress and a metric at each step."""
    steps = max(1, int(params["steps"]))
    for step in range(steps):
        time.sleep(float(params["seconds"]) / steps)
        ctx.metric("step_value", step * step, step=step)
        ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")
    ctx.write_json("sleep.json", {"steps": steps, "seconds": params["seconds"]})
    return {"steps": steps}


@job(
    "diagnostics.fail",
    title="Fail on purpose",
    defaults={"message": "failing on purpose"},
    mem_gb=0.3,
)
def fail(params: dict[str, Any], ctx: JobContext) -> dict:
    """Report some progress, then raise: the reason must reach the status, the traceback the log."""
    ctx.progress(0.5, "about to fail")
    raise SubnetScopeError(str(params["message"]))
