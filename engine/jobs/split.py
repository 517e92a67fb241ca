"""Split jobs: a kind cut into shards that run apart (one SLURM array), then one reduce step.

A kind becomes splittable with `@splits("kind", plan=..., reduce=...)` over its shard function:
`plan(params, n)` gives each shard's params (at most n shards), the decorated `shard(params, ctx)`
runs one of them into its own result folder, and `reduce(params, shard_result_dirs, ctx)` writes
the parent's result, the same files the unsplit kind writes.

On disk a split job is an ordinary job folder whose spec says `shards: N`, with one job folder
per shard under `shards/` (`<parent id>-s000`, ...; a spec with `shard: i`). The folders are the
source of truth: on SLURM the shards run as one array and the reduce as a job that depends on
it (`afterany`), so a split job finishes with no dashboard running; locally the parent's process
runs the shards one after another, then the reduce. Either way the reduce refuses to run unless
every shard succeeded, and the parent then fails with the first failed shard's reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.errors import SubnetScopeError
from engine.jobs import files
from engine.jobs.context import JobCancelled, JobContext
from engine.jobs.model import JobSpec, JobStatus, JobView, now_iso
from engine.jobs.registry import load_kinds
from engine.jobs.status_file import read_status, update_status, update_status_or_show
from engine.jobs.store import read_view

SHARDS_DIR = "shards"
MAX_SHARDS = 1000  # a SLURM array's default MaxArraySize is 1001
REDUCE_SHARE = 0.9  # of the parent's progress bar: the shards; the rest is the reduce


@dataclass(frozen=True)
class Split:
    kind: str
    plan: Callable[[dict[str, Any], int], list[dict[str, Any]]]
    shard: Callable[[dict[str, Any], JobContext], Any]
    reduce: Callable[[dict[str, Any], list[Path], JobContext], Any]


_SPLITS: dict[str, Split] = {}


def splits(
    kind: str,
    *,
    plan: Callable[[dict[str, Any], int], list[dict[str, Any]]],
    reduce: Callable[[dict[str, Any], list[Path], JobContext], Any],
) -> Callable:
    """Make job kind `kind` splittable; decorates the function that runs one shard."""

    def register(fn: Callable[[dict[str, Any], JobContext], Any]) -> Callable:
        _SPLITS[kind] = Split(kind=kind, plan=plan, shard=fn, reduce=reduce)
        return fn

    return register


def split_kinds() -> dict[str, Split]:
    load_kinds()
    return dict(_SPLITS)


def get_split(kind: str) -> Split:
    known = split_kinds()
    if kind not in known:
        names = ", ".join(sorted(known)) or "none"
        raise SubnetScopeError(
            f"job kind '{kind}' does not split into shards; the kinds that do: {names}"
        )
    return known[kind]


def plan_shards(kind: str, params: dict[str, Any], wanted: int) -> list[dict[str, Any]]:
    """The shards' params; one sentence when `wanted` is not a count or the plan is empty."""
    if isinstance(wanted, bool) or not isinstance(wanted, int) or not 1 <= wanted <= MAX_SHARDS:
        raise SubnetScopeError(f"shards must be a whole number from 1 to {MAX_SHARDS}")
    planned = get_split(kind).plan(params, wanted)
    if not planned:
        raise SubnetScopeError(f"{kind} found nothing to split into shards with these params")
    return planned[:wanted]


def consecutive(items: list, wanted: int) -> list[list]:
    """`items` in at most `wanted` consecutive groups, none empty, sizes within one of another
    (a plan's usual cut: the reduce then reads the shards in the items' order)."""
    n = min(wanted, len(items))
    size, extra = divmod(len(items), max(n, 1))
    groups, start = [], 0
    for index in range(n):
        stop = start + size + (index < extra)
        groups.append(items[start:stop])
        start = stop
    return groups


def shard_id(parent_id: str, index: int) -> str:
    return f"{parent_id}-s{index:03d}"


def create_shards(job_dir: Path, spec: JobSpec, planned: list[dict[str, Any]]) -> list[Path]:
    """One job folder per shard under `job_dir/shards/`, status before spec as in submit."""
    dirs = []
    for index, params in enumerate(planned):
        shard = replace(spec, id=shard_id(spec.id, index), params=params, shards=0, shard=index)
        shard_dir = job_dir / SHARDS_DIR / shard.id
        shard_dir.mkdir(parents=True)
        (shard_dir / files.RESULT).mkdir()
        (shard_dir / files.LOG).touch()
        (shard_dir / files.EVENTS).touch()
        files.write_json_atomic(shard_dir / files.STATUS, JobStatus(message="queued").to_json())
        files.write_json_atomic(shard_dir / files.SPEC, shard.to_json())
        dirs.append(shard_dir)
    return dirs


def shard_dirs(job_dir: Path) -> list[Path]:
    root = job_dir / SHARDS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / files.SPEC).is_file())


def shard_views(job_dir: Path) -> list[JobView]:
    return [v for v in (read_view(d) for d in shard_dirs(job_dir)) if v is not None]


def progress_of(shards: list[JobView], expected: int) -> dict[str, Any]:
    """The parent's status changes its shards imply: progress while they run; `failed` (or
    `cancelled`) with that shard's reason once one ended without succeeding."""
    n = max(expected, len(shards), 1)
    done = sum(v.status.state == "succeeded" for v in shards)
    for index, view in enumerate(shards):
        state = view.status.state
        if state in ("failed", "cancelled"):
            what = "failed" if state == "failed" else "was cancelled"
            return {
                "state": state,
                "message": f"shard {index + 1}/{n} {what}: {view.status.message}"[:500],
                "shards_done": done,
                "finished": now_iso(),
            }
    worked = sum(1.0 if v.status.state == "succeeded" else v.status.fraction for v in shards)
    running = sum(v.status.state == "running" for v in shards)
    message = f"{done}/{n} shards done" + (f", {running} running" if running else "")
    changes: dict[str, Any] = {
        "fraction": REDUCE_SHARE * worked / n,
        "message": message,
        "shards_done": done,
    }
    if running or done:
        changes["state"] = "running"
    return changes


def cancel_shards(job_dir: Path, grace: float = 5.0) -> None:
    """Ask every shard to stop: its cancel marker, and `cancelled` for those not yet started
    (a running shard ends itself on the marker or its signal)."""
    for view in shard_views(job_dir):
        if view.status.is_final:
            continue
        marker = {"requested": time.time(), "deadline": time.time() + grace}
        try:
            files.write_json_atomic(view.path / files.CANCEL, marker)
        except OSError:
            continue  # the parent's own cancel still stops the array
        if view.status.state == "queued":
            update_status_or_show(
                view.path,
                state="cancelled",
                message="cancelled before it started",
                finished=now_iso(),
            )


def _fail_reason(exc: BaseException) -> str:
    reason = str(exc) if isinstance(exc, SubnetScopeError) else f"{type(exc).__name__}: {exc}"
    return reason[:500]


def run_shard(shard_dir: Path, split: Split, ctx: JobContext) -> Any:
    """Run one shard in this process into its result folder, with its status kept."""
    spec = JobSpec.from_json(files.read_json(shard_dir / files.SPEC))
    update_status(shard_dir, state="running", started=now_iso(), message="running")
    try:
        ctx.check_cancel()
        summary = split.shard(spec.params, ctx)
        ctx.write_manifest(summary)
    except JobCancelled as exc:
        update_status(shard_dir, state="cancelled", message=str(exc), finished=now_iso())
        raise
    except BaseException as exc:
        update_status(
            shard_dir,
            state="failed",
            message=_fail_reason(exc),
            finished=now_iso(),
            exit_code=1,
        )
        raise
    update_status(
        shard_dir, state="succeeded", fraction=1.0, message="done", finished=now_iso(), exit_code=0
    )
    return summary


def run_here(spec: JobSpec, job_dir: Path, ctx: JobContext) -> Any:
    """The local backend: the shards one after another in this process, then the reduce."""
    split = get_split(spec.kind)
    dirs = shard_dirs(job_dir)
    n = len(dirs)
    for index, shard_dir in enumerate(dirs):
        if read_status(shard_dir).state == "succeeded":
            continue

        def report(index: int = index, shard_dir: Path = shard_dir, **changes: Any) -> None:
            update_status(shard_dir, **changes)
            if "fraction" in changes:
                ctx.progress(
                    REDUCE_SHARE * (index + changes["fraction"]) / n,
                    f"shard {index + 1}/{n}: {changes.get('message', '')}",
                )

        shard_ctx = JobContext(shard_dir, report)
        if ctx.cancelled():
            shard_ctx.request_cancel()
        print(f"[subnetscope] shard {index + 1}/{n} ({shard_dir.name})", flush=True)
        try:
            run_shard(shard_dir, split, shard_ctx)
        except JobCancelled:
            cancel_shards(job_dir)
            raise
        except BaseException as exc:
            cancel_shards(job_dir)
            raise SubnetScopeError(f"shard {index + 1}/{n} failed: {_fail_reason(exc)}") from exc
        update_status(job_dir, shards_done=index + 1)
    return reduce_here(spec, job_dir, ctx)


def reduce_here(
    spec: JobSpec,
    job_dir: Path,
    ctx: JobContext,
    settle: Callable[[JobView], JobView] | None = None,
) -> Any:
    """The reduce, once every shard has succeeded; else the first failed shard's reason.
    `settle` brings a shard whose folder never reached a final state up to date (SLURM: a task
    killed for its time or memory is final only in sacct)."""
    shards = shard_views(job_dir)
    if settle is not None:
        shards = [v if v.status.is_final else settle(v) for v in shards]
    if len(shards) != spec.shards:
        raise SubnetScopeError(
            f"the job has {len(shards)} readable shard folders of the {spec.shards} it was split "
            "into"
        )
    verdict = progress_of(shards, spec.shards)
    if verdict.get("state") == "cancelled":
        raise JobCancelled(verdict["message"])
    if verdict.get("state") == "failed":
        raise SubnetScopeError(verdict["message"])
    unfinished = [i for i, v in enumerate(shards) if v.status.state != "succeeded"]
    if unfinished:
        first = unfinished[0]
        raise SubnetScopeError(
            f"shard {first + 1}/{spec.shards} ended without a result "
            f"({shards[first].status.state}: {shards[first].status.message})"
        )
    update_status(job_dir, shards_done=spec.shards)
    ctx.progress(REDUCE_SHARE, f"reducing {spec.shards} shards")
    return get_split(spec.kind).reduce(spec.params, [v.path / files.RESULT for v in shards], ctx)
