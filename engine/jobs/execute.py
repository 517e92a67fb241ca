"""`python -m engine jobs exec DIR`: run one job in this (fresh) interpreter and record its end."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from engine.errors import SubnetScopeError
from engine.jobs import files, split
from engine.jobs.context import JobCancelled, JobContext
from engine.jobs.devices import check_gpus, seen_devices, used_devices
from engine.jobs.model import JobSpec, now_iso
from engine.jobs.processes import start_tick
from engine.jobs.registry import get_kind
from engine.jobs.resources import ResourceSampler, peak_rss_gb
from engine.jobs.status_file import read_status, update_status
from engine.jobs.tensorboard import wants_tensorboard

HEARTBEAT_S = 5.0


def _redirect_output(log_path: Path) -> None:
    """Send this process's stdout/stderr (and its children's) to the job log.

    The local runner already points them there; under SLURM they would go to submitit's files.
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _heartbeat(job_dir: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        update_status(job_dir, heartbeat=time.time())


def exec_job(job_dir: Path) -> int:
    """Run the job in `job_dir`; returns 0 succeeded, 1 failed, 2 cancelled."""
    job_dir = Path(job_dir).resolve()
    spec_data = files.read_json(job_dir / files.SPEC)
    if spec_data is None:
        raise SubnetScopeError(f"{job_dir} is not a job folder (no readable {files.SPEC})")
    spec = JobSpec.from_json(spec_data)
    _redirect_output(job_dir / files.LOG)
    if read_status(job_dir).is_final:  # cancelled while queued
        return 2

    from engine.runtime import limit_threads

    limit_threads(max(1, spec.resources.cpus))
    ctx = JobContext(job_dir, lambda **changes: update_status(job_dir, **changes))
    interruptible = threading.Event()

    def on_term(signum, frame):
        ctx.request_cancel()
        # Raising here interrupts Python code at once; C calls finish first (the runner's
        # SIGKILL after the grace period covers those).
        if interruptible.is_set():
            interruptible.clear()
            raise JobCancelled(f"cancelled (signal {signal.Signals(signum).name})")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if spec.backend == "slurm":
        signal.signal(signal.SIGUSR2, on_term)  # submitit/SLURM's pre-timeout warning
    pid = os.getpid()
    update_status(
        job_dir,
        state="running",
        pid=pid,
        pid_start=start_tick(pid),
        host=socket.gethostname(),
        started=now_iso(),
        heartbeat=time.time(),
        message="starting",
    )
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(job_dir, stop), daemon=True).start()
    sampler = ResourceSampler(ctx.report_resources).start()
    print(
        f"[subnetscope] job {spec.id} ({spec.kind}) started on {socket.gethostname()}", flush=True
    )
    try:
        run, params = _work(spec, job_dir)
        if wants_tensorboard(params):
            ctx.open_tensorboard(spec.kind, params)
        update_status(job_dir, devices=seen_devices())
        # The reduce of a split SLURM job runs without the GPUs its shards asked for.
        reduce_only = spec.shards and spec.backend == "slurm"
        check_gpus(0 if reduce_only else spec.resources.gpus, spec.backend)
        interruptible.set()
        ctx.check_cancel()
        summary = run(params, ctx)
        interruptible.clear()
        ctx.write_manifest(summary)
        update_status(
            job_dir,
            state="succeeded",
            fraction=1.0,
            message="done",
            finished=now_iso(),
            exit_code=0,
            **_at_end(job_dir, ctx, sampler),
        )
        print(f"[subnetscope] job {spec.id} succeeded", flush=True)
        return 0
    except JobCancelled as exc:
        interruptible.clear()
        update_status(
            job_dir,
            state="cancelled",
            message=str(exc),
            finished=now_iso(),
            **_at_end(job_dir, ctx, sampler),
        )
        print(f"[subnetscope] job {spec.id} {exc}", flush=True)
        return 2
    except BaseException as exc:  # the traceback goes to the log, the reason to the status
        interruptible.clear()
        traceback.print_exc()
        reason = str(exc) if isinstance(exc, SubnetScopeError) else f"{type(exc).__name__}: {exc}"
        update_status(
            job_dir,
            state="failed",
            message=reason[:500],
            finished=now_iso(),
            exit_code=1,
            **_at_end(job_dir, ctx, sampler),
        )
        return 1
    finally:
        stop.set()
        with contextlib.suppress(OSError):  # a full disk: the final state matters more
            sys.stdout.flush()
            sys.stderr.flush()
        if spec.backend == "local":
            _next_in_queue(job_dir)


def _work(spec: JobSpec, job_dir: Path) -> tuple:
    """The function this folder runs and its params: the kind's own, one shard of a split kind,
    or a split job's whole (local: its shards, then the reduce; SLURM: the reduce, the array
    of shards having run)."""
    kind = get_kind(spec.kind)
    if spec.shard is not None:
        return split.get_split(spec.kind).shard, spec.params
    params = {**kind.defaults, **spec.params}
    if not spec.shards:
        return kind.run, params
    if spec.backend == "local":
        return (lambda params, ctx: split.run_here(spec, job_dir, ctx)), params
    from engine.jobs.runners import SlurmRunner

    settle = SlurmRunner().settle_shard
    return (lambda params, ctx: split.reduce_here(spec, job_dir, ctx, settle)), params


def _at_end(job_dir: Path, ctx: JobContext, sampler: ResourceSampler) -> dict:
    """Written with the final state (no write after it): peak memory, the last resources sample
    (also the last `resources` event), the GPUs torch used. Closes the TensorBoard file first,
    so a reader that sees the final state sees all of it."""
    final = sampler.stop()
    with contextlib.suppress(OSError):  # a full disk: the final state matters more
        ctx.close()
    ended: dict = {"peak_rss_gb": peak_rss_gb(), "resources": final}
    used = used_devices()
    if used:
        ended["devices"] = {**(read_status(job_dir).devices or {}), **used}
    return ended


def _next_in_queue(job_dir: Path) -> None:
    """A finished local job hands its slot on, so the queue moves with no dashboard open: a
    small detached process (engine.jobs.handoff) waits for this one to exit, then starts the
    next job."""
    import subprocess

    from engine.paths import PROJECT_ROOT

    command = [sys.executable, "-m", "engine.jobs.handoff", str(job_dir.parent), str(os.getpid())]
    try:
        with open(job_dir / files.LOG, "ab") as log:  # its errors, if any, end this job's log
            subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
    except OSError:  # the next look at the jobs moves the queue as well
        traceback.print_exc()
