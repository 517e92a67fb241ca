"""A splittable job kind for tests of split jobs (loaded through SUBNETSCOPE_JOB_MODULES)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from engine.errors import SubnetScopeError
from engine.jobs import JobContext, consecutive, job, splits

KIND = "tests.squares"


@job(KIND, title="Squares of numbers", defaults={"numbers": [], "fail_on": None, "pause": 0.0})
def squares(params: dict[str, Any], ctx: JobContext) -> dict:
    """Square each number (pausing `pause` s per number); fail on `fail_on`."""
    rows = []
    numbers = list(params["numbers"])
    for i, n in enumerate(numbers):
        if n == params["fail_on"]:
            raise SubnetScopeError(f"planted failure on {n}")
        time.sleep(float(params["pause"]))
        rows.append({"n": n, "square": n * n})
        ctx.progress((i + 1) / len(numbers), f"{n}")
    ctx.write_json("squares.json", {"rows": rows, "total": sum(r["square"] for r in rows)})
    return {"count": len(rows)}


def plan(params: dict[str, Any], wanted: int) -> list[dict[str, Any]]:
    return [{**params, "numbers": group} for group in consecutive(list(params["numbers"]), wanted)]


def reduce(params: dict[str, Any], shard_results: list[Path], ctx: JobContext) -> dict:
    rows = [
        row
        for result in shard_results
        for row in json.loads((result / "squares.json").read_text())["rows"]
    ]
    ctx.write_json("squares.json", {"rows": rows, "total": sum(r["square"] for r in rows)})
    return {"count": len(rows)}


splits(KIND, plan=plan, reduce=reduce)(squares)
