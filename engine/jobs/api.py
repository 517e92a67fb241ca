"""Submit, look up, follow and cancel jobs. Every look reconciles active jobs with reality."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import engine
from engine.errors import SubnetScopeError
from engine.jobs import files, queue, split
from engine.jobs.devices import check_gpus
from engine.jobs.model import ACTIVE_STATES, BACKENDS, JobSpec, JobStatus, JobView, Resources
from engine.jobs.registry import get_kind
from engine.jobs.runners import check_slurm_resources, get_runner
from engine.jobs.status_file import update_status, update_status_or_show
from engine.jobs.store import JobStore, read_view


def _new_id(kind: str) -> str:
    """Time first, to the microsecond: ids sort in submission order (the queue's order)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return f"{stamp}-{kind.replace('.', '-')}-{secrets.token_hex(3)}"


def submit(
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    backend: str = "local",
    resources: Resources | None = None,
    store: JobStore | None = None,
    shards: int | None = None,
) -> JobView:
    """Create the job folder and queue it (local) or hand it to SLURM; returns at once. A local
    job starts when the queue gives it a slot (see engine.jobs.queue).

    `shards`: split the job into at most that many shards (kinds that split: engine.jobs.split),
    one SLURM array task each, or run one after another by the local job; a reduce step then
    writes the same result the unsplit job writes."""
    if backend not in BACKENDS:
        raise SubnetScopeError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    job_kind = get_kind(kind)
    if params is not None and not isinstance(params, dict):
        raise SubnetScopeError("job params must be a JSON object")
    store = store or JobStore()
    resources = resources or Resources()
    if not resources.mem_gb:
        resources = replace(resources, mem_gb=job_kind.mem_gb)
    if backend == "slurm":
        check_slurm_resources(resources)
    else:
        check_gpus(resources.gpus, backend)
    full_params = {**job_kind.defaults, **(params or {})}
    planned = split.plan_shards(kind, full_params, shards) if shards is not None else []
    spec = JobSpec(
        id=_new_id(kind),
        kind=kind,
        params=full_params,
        backend=backend,
        resources=resources,
        engine_version=engine.__version__,
        shards=len(planned),
    )
    job_dir = store.root / spec.id
    try:
        job_dir.mkdir(parents=True)
        (job_dir / files.RESULT).mkdir()
        (job_dir / files.LOG).touch()
        (job_dir / files.EVENTS).touch()
        split.create_shards(job_dir, spec, planned)
        # The status first, the spec last: a folder with a spec always has a status to read.
        files.write_json_atomic(job_dir / files.STATUS, JobStatus(message="queued").to_json())
        files.write_json_atomic(job_dir / files.SPEC, spec.to_json())
        view = JobView(job_dir, spec, JobStatus())
        store.upsert(view)
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise SubnetScopeError(f"cannot create the job under {store.root}: {exc}") from exc
    if backend == "local":
        return refresh(view, store)  # moves the queue: the job may start at once
    try:
        launched = get_runner(backend).launch(view)
    except SubnetScopeError as exc:
        split.cancel_shards(job_dir)
        status = update_status(job_dir, state="failed", message=str(exc))
        store.upsert(replace(view, status=status))
        raise
    status = update_status(job_dir, **launched)
    view = replace(view, status=status)
    store.upsert(view)
    return view


def refresh(view: JobView, store: JobStore | None = None, *, pumped: bool = False) -> JobView:
    """Re-read the folder; for an active job, ask its runner (or the local queue) whether it is
    really still going. `pumped`: the caller has just moved the queue."""
    store = store or JobStore(view.path.parent)
    fresh = read_view(view.path) or view
    if fresh.status.state in ACTIVE_STATES and not fresh.damaged:
        if fresh.spec.backend == "local" and not pumped:
            queue.pump(store)
            fresh = read_view(view.path) or fresh
        # Again after the pump: a change it could not write (a full disk) is still shown.
        changes = get_runner(fresh.spec.backend).reconcile(fresh)
        if changes:
            fresh = replace(fresh, status=update_status_or_show(fresh.path, **changes))
    with contextlib.suppress(sqlite3.Error):  # the index is only a cache of the folders
        store.upsert(fresh)
    return fresh


def get_job(job_id: str, store: JobStore | None = None) -> JobView:
    """The job with this id (or unique id prefix). Ids are checked before they touch the file
    system: a path, `..` or anything but a job id's characters is refused."""
    files.check_job_id(job_id)
    store = store or JobStore()
    view = read_view(store.root / job_id)
    if view is None:
        # Accept a unique prefix, as people type short ids.
        matches = [i for i in store.folder_ids() if i.startswith(job_id)]
        if len(matches) != 1:
            raise SubnetScopeError(f"no job '{job_id}' under {store.root}")
        view = read_view(store.root / matches[0])
    return refresh(view, store)


def list_jobs(
    kind: str | None = None,
    states: tuple[str, ...] | None = None,
    limit: int | None = None,
    store: JobStore | None = None,
) -> list[JobView]:
    """Jobs newest first; active ones are reconciled before they are returned."""
    store = store or JobStore()
    store.sync()
    queue.pump(store)
    # The index may be behind on active jobs only (a final state never changes): filter in SQL
    # by the wanted states plus the active ones, then on the fresh views.
    candidates = tuple({*states, *ACTIVE_STATES}) if states else None
    views = []
    for job_id in store.ids(kind=kind, states=candidates):
        view = read_view(store.root / job_id)
        if view is None:
            continue
        if view.status.state in ACTIVE_STATES:
            view = refresh(view, store, pumped=True)
        if states and view.status.state not in states:
            continue
        views.append(view)
        if limit and len(views) >= limit:
            break
    return views


def cancel_job(job_id: str, *, wait: bool = False, store: JobStore | None = None) -> JobView:
    """Ask a job to stop: SIGTERM (local) or scancel (SLURM); with `wait`, until it has stopped."""
    store = store or JobStore()
    view = get_job(job_id, store)
    if view.status.is_final:
        return view
    runner = get_runner(view.spec.backend)
    runner.cancel(view, wait=wait)
    if view.spec.shards:
        split.cancel_shards(view.path)
    if view.status.state == "queued" and view.status.pid is None and not view.status.slurm_id:
        update_status(
            view.path, state="cancelled", message="cancelled before it started", position=None
        )
        if view.spec.backend == "local":
            queue.pump(store)
    if wait:
        return wait_job(view.id, timeout=30, store=store)
    return refresh(view, store)


def wait_job(
    job_id: str,
    *,
    timeout: float | None = None,
    poll_s: float = 0.2,
    on_update: Callable[[JobView], None] | None = None,
    store: JobStore | None = None,
) -> JobView:
    """Block until the job reaches a final state (or the timeout passes); returns its last view."""
    store = store or JobStore()
    deadline = None if timeout is None else time.monotonic() + timeout
    view = get_job(job_id, store)
    while not view.status.is_final:
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(poll_s)
        view = get_job(view.id, store)
        if on_update:
            on_update(view)
    return view


def job_events(view: JobView) -> list[dict]:
    return files.read_events(view.path / files.EVENTS)


def job_log(view: JobView, max_bytes: int = 20_000) -> str:
    return files.tail(view.path / files.LOG, max_bytes)


def job_result(view: JobView) -> dict | None:
    """The result manifest (files and summary) once the job has written it; None before."""
    return files.read_json(view.path / files.RESULT / files.MANIFEST)
