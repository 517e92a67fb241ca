"""The local job queue: at most N local jobs run at once; the rest wait in their folders.

The queue is the job folders, not a thread: a local job in state `queued` without a process waits
for a slot. Every look at the jobs (a submit, a listing, a wait, a job's own end) calls `pump`,
which, under a file lock, reconciles the jobs that hold a slot and starts the oldest waiting jobs
while slots and memory allow, in the order they were submitted. The queue therefore survives a
dashboard restart, and the CLI, the dashboard and the jobs themselves all move it the same way.
SLURM jobs are SLURM's business and never wait here.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock

from engine.atomic import write_json_atomic
from engine.errors import SubnetScopeError
from engine.jobs import files
from engine.jobs.model import ACTIVE_STATES, JobView, now_iso
from engine.jobs.status_file import read_status_strict, update_status, update_status_or_show

ENV_MAX_JOBS = "SUBNETSCOPE_MAX_JOBS"
ENV_MEMORY_GB = "SUBNETSCOPE_JOB_MEMORY_GB"
SETTINGS_FILE = "queue.json"  # in the cache root, beside jobs/
MEMORY_SHARE = 0.8  # of the machine's memory, the default budget of all local jobs together


@dataclass(frozen=True)
class QueueSettings:
    max_jobs: int  # local jobs running at once
    memory_gb: float  # the declared memory of all running local jobs together
    source: str  # where they come from, in words


@dataclass(frozen=True)
class QueueState:
    settings: QueueSettings
    running: list[JobView]  # local jobs holding a slot
    waiting: list[JobView]  # in start order: waiting[0] starts next

    @property
    def memory_in_use_gb(self) -> float:
        return sum(memory_of(v) for v in self.running)


def machine_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return 8.0


def default_settings() -> QueueSettings:
    cores = os.cpu_count() or 2
    return QueueSettings(
        max_jobs=max(1, cores // 2),
        memory_gb=round(MEMORY_SHARE * machine_memory_gb(), 1),
        source=f"default: half of {cores} cores, {MEMORY_SHARE:.0%} of the memory",
    )


def _settings_path(root: Path) -> Path:
    return root.parent / SETTINGS_FILE


def _positive(value: object, what: str, kind: type) -> int | float:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SubnetScopeError(f"{what} must be a positive number, not {value!r:.40}") from None
    if not 0 < number < float("inf"):  # also refuses NaN
        raise SubnetScopeError(f"{what} must be a positive number, not {value!r:.40}")
    return number


def queue_settings(root: Path | None = None) -> QueueSettings:
    """The environment (`SUBNETSCOPE_MAX_JOBS`, `SUBNETSCOPE_JOB_MEMORY_GB`) wins over the
    settings file (`cache/queue.json`, written by the Runs page), which wins over the defaults."""
    root = root or files.jobs_root()
    settings = default_settings()
    sources = []
    saved = files.read_json(_settings_path(root)) or {}
    if isinstance(saved, dict):
        try:
            if "max_jobs" in saved:
                settings = replace(settings, max_jobs=_positive(saved["max_jobs"], "max_jobs", int))
            if "memory_gb" in saved:
                memory = _positive(saved["memory_gb"], "memory_gb", float)
                settings = replace(settings, memory_gb=memory)
            if saved:
                sources.append(str(_settings_path(root)))
        except SubnetScopeError:
            pass  # a damaged settings file is the defaults, not a dead queue
    if os.environ.get(ENV_MAX_JOBS):
        settings = replace(
            settings, max_jobs=_positive(os.environ[ENV_MAX_JOBS], ENV_MAX_JOBS, int)
        )
        sources.append(f"${ENV_MAX_JOBS}")
    if os.environ.get(ENV_MEMORY_GB):
        settings = replace(
            settings, memory_gb=_positive(os.environ[ENV_MEMORY_GB], ENV_MEMORY_GB, float)
        )
        sources.append(f"${ENV_MEMORY_GB}")
    return replace(settings, source=", ".join(sources)) if sources else settings


def save_queue_settings(max_jobs: int, memory_gb: float, root: Path | None = None) -> QueueSettings:
    """Write the settings file; the environment still wins where it is set."""
    root = root or files.jobs_root()
    values = {
        "max_jobs": _positive(max_jobs, "max_jobs", int),
        "memory_gb": _positive(memory_gb, "memory_gb", float),
    }
    write_json_atomic(_settings_path(root), values)
    return queue_settings(root)


def memory_of(view: JobView) -> float:
    """The memory a job declared (its resources, filled from its kind's estimate at submit)."""
    declared = view.spec.resources.mem_gb
    return float(declared) if declared else 0.0


def _active_local(store) -> list[JobView]:
    from engine.jobs.store import read_view

    views = []
    for job_id in store.ids(states=ACTIVE_STATES):
        view = read_view(store.root / job_id)
        if view is not None and view.spec.backend == "local" and not view.damaged:
            views.append(view)
    return views


def _reconcile(view: JobView) -> JobView:
    from engine.jobs.runners import get_runner

    changes = get_runner("local").reconcile(view)
    if changes:
        view = replace(view, status=update_status_or_show(view.path, **changes))
    return view


def _start(view: JobView) -> JobView:
    """Launch a waiting job. The status is written before and after the launch with the strict
    writer: a job whose pid could not be recorded would be started twice, so it is stopped."""
    from engine.jobs import processes
    from engine.jobs.runners import get_runner

    try:
        update_status(view.path, position=None, message="starting")
    except OSError:
        return view  # the folder cannot be written now: it keeps its place for the next look
    try:
        launched = get_runner("local").launch(view)
    except (OSError, SubnetScopeError) as exc:
        reason = f"could not start its process: {exc}"[:300]
        failed = update_status_or_show(
            view.path, state="failed", message=reason, finished=now_iso()
        )
        return replace(view, status=failed)
    try:
        status = update_status(view.path, **launched)
    except OSError as exc:
        processes.signal_group(launched["pid"], signal.SIGKILL)
        return replace(view, status=update_status_or_show(view.path, message=str(exc)))
    return replace(view, status=status)


def queue_state(store) -> QueueState:
    """The queue as it stands, without starting anything."""
    views = sorted(_active_local(store), key=lambda v: (v.spec.created, v.id))
    return QueueState(
        settings=queue_settings(store.root),
        running=[v for v in views if v.holds_slot],
        waiting=[v for v in views if v.is_waiting],
    )


def pump(store) -> QueueState:
    """Reconcile the running local jobs, start waiting ones while slots and memory allow (strict
    submission order: a big job at the head is not overtaken), and record each waiting job's
    position. Safe to call from any number of processes at once."""
    with FileLock(str(store.root / ".queue.lock"), timeout=60):
        settings = queue_settings(store.root)
        views = sorted(_active_local(store), key=lambda v: (v.spec.created, v.id))
        running = [r for r in (_reconcile(v) for v in views if v.holds_slot) if r.holds_slot]
        waiting = [v for v in views if v.is_waiting]
        in_use = sum(memory_of(v) for v in running)
        still_waiting = []
        for view in waiting:
            try:
                read_status_strict(view.path)  # a folder still being created is not started
            except (ValueError, TypeError):
                continue
            need = memory_of(view)
            free_slot = len(running) < settings.max_jobs
            # A job declaring more than the whole budget runs alone rather than never.
            fits = in_use + need <= settings.memory_gb or not running
            if not still_waiting and free_slot and fits:
                started = _start(view)
                if started.holds_slot:
                    running.append(started)
                    in_use += need
                continue
            still_waiting.append(view)
        for position, view in enumerate(still_waiting, start=1):
            if view.status.position != position:
                message = f"waiting for a slot: {_ordinal(position)} in the local queue"
                if memory_of(view) > settings.memory_gb:
                    message += f" (declares {memory_of(view):g} GB, more than the budget: it "
                    message += "will run alone)"
                update_status_or_show(view.path, position=position, message=message)
        fresh = [read_status_safe(v) for v in still_waiting]
        return QueueState(settings=settings, running=running, waiting=fresh)


def read_status_safe(view: JobView) -> JobView:
    try:
        return replace(view, status=read_status_strict(view.path))
    except (ValueError, TypeError):
        return view


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
