"""Runners behind one interface: `local` (a detached process) and `slurm` (submitit).

A runner launches `python -m engine jobs exec DIR`, reconciles a job whose folder went quiet with
what the process table or SLURM says, and cancels. Neither ever unpickles anything a job wrote.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from engine.errors import SubnetScopeError
from engine.jobs import files, processes
from engine.jobs.model import JobView, now_iso
from engine.paths import cache_root

CANCEL_GRACE_S = 5.0


class Runner(Protocol):
    name: str

    def launch(self, view: JobView) -> dict[str, Any]: ...

    def reconcile(self, view: JobView) -> dict[str, Any] | None: ...

    def cancel(self, view: JobView) -> dict[str, Any] | None: ...


def _cancel_marker(view: JobView, grace: float) -> dict:
    marker = {"requested": time.time(), "deadline": time.time() + grace}
    files.write_json_atomic(view.path / files.CANCEL, marker)
    return marker


def _job_env(view: JobView, base: dict[str, str] | None = None) -> dict[str, str]:
    threads = str(max(1, view.spec.resources.cpus))
    env = {**(os.environ if base is None else base)}
    env.update(PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    # A job runs beside the dashboard: cap its BLAS/torch threads to what it asked for.
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, SUBNETSCOPE_THREADS=threads)
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    return env


# What a SLURM job may inherit: submitit pickles the environment into a file on the shared
# file system, so tokens and secrets stay behind (a gated model reads the token that
# `huggingface-cli login` saved under $HF_HOME, not one from the environment).
SLURM_ENV_NAMES = {
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "SHELL",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "LD_LIBRARY_PATH",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TRANSFORMERS_CACHE",
    "TRANSFORMERS_VERBOSITY",
    "TORCH_HOME",
    "CUDA_HOME",
    "XDG_CACHE_HOME",
}
SLURM_ENV_PREFIXES = ("LC_", "SUBNETSCOPE_")
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")


def slurm_env(view: JobView) -> dict[str, str]:
    """The environment a SLURM job gets: the allow-listed variables, never one named like a
    secret, plus the thread caps."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if (name in SLURM_ENV_NAMES or name.startswith(SLURM_ENV_PREFIXES))
        and not any(marker in name.upper() for marker in SECRET_MARKERS)
    }
    return _job_env(view, base=kept)


# An sbatch option value is written into a `#SBATCH --key=value` line of a shell script: one
# line, and none of the characters a shell or sbatch's own parser would read differently.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:/@%+=-]*")
_SAFE_KEY = re.compile(r"[a-z][a-z0-9_]*")


def check_slurm_value(key: str, value: Any) -> None:
    if not isinstance(key, str) or not _SAFE_KEY.fullmatch(key):
        raise SubnetScopeError(f"SLURM option name {key!r:.60} is not a plain option name")
    if isinstance(value, dict):
        for inner_key, inner in value.items():
            check_slurm_value(inner_key, inner)
        return
    if isinstance(value, bool | int | float) or value is None:
        return
    if not isinstance(value, str) or not _SAFE_VALUE.fullmatch(value):
        raise SubnetScopeError(
            f"SLURM option {key}={value!r:.60} holds a newline, a space or a shell character; "
            "use letters, digits and _ . , : / @ % + = -"
        )


def check_slurm_resources(resources) -> None:
    """Refuse, before anything is written, resources that would inject into the sbatch file."""
    if resources.partition is not None:
        check_slurm_value("partition", resources.partition)


class LocalRunner:
    name = "local"

    def launch(self, view: JobView) -> dict[str, Any]:
        command = processes.engine_command("jobs", "exec", str(view.path))
        process = processes.launch(command, view.path / files.LOG, _job_env(view))
        return {"pid": process.pid, "pid_start": processes.start_tick(process.pid)}

    def reconcile(self, view: JobView) -> dict[str, Any] | None:
        status = view.status
        alive = processes.is_alive(status.pid, status.pid_start)
        marker = files.read_json(view.path / files.CANCEL)
        if alive:
            if marker and time.time() > marker.get("deadline", float("inf")):
                processes.signal_group(status.pid, signal.SIGKILL)
            return None
        if status.pid is None:
            return None
        code = processes.exit_code(status.pid)
        if marker:
            return {
                "state": "cancelled",
                "message": "cancelled (its process was stopped)",
                "finished": now_iso(),
            }
        reason = "process died" + (f" (exit code {code})" if code is not None else "")
        return {"state": "failed", "message": reason, "exit_code": code, "finished": now_iso()}

    def cancel(self, view: JobView, wait: bool = False, grace: float = CANCEL_GRACE_S) -> None:
        _cancel_marker(view, grace)
        pid = view.status.pid
        if pid is None or not processes.is_alive(pid, view.status.pid_start):
            return
        processes.signal_group(pid, signal.SIGTERM)
        if not wait:
            return  # a later look escalates to SIGKILL once the grace period is over
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not processes.is_alive(pid, view.status.pid_start):
                return
            time.sleep(0.05)
        processes.signal_group(pid, signal.SIGKILL)


# SLURM's job states (sacct) → ours, for jobs whose folder has no final state.
_SLURM_FINAL = {
    "COMPLETED": ("failed", "SLURM job completed without writing a final status"),
    "CANCELLED": ("cancelled", "cancelled (SLURM)"),
    "FAILED": ("failed", "SLURM job failed"),
    "TIMEOUT": ("failed", "SLURM time limit reached"),
    "OUT_OF_MEMORY": ("failed", "SLURM job ran out of memory"),
    "NODE_FAIL": ("failed", "SLURM node failure"),
    "PREEMPTED": ("failed", "SLURM job preempted"),
    "BOOT_FAIL": ("failed", "SLURM boot failure"),
    "DEADLINE": ("failed", "SLURM deadline reached"),
}
HEARTBEAT_STALE_S = 30.0
SACCT_MIN_INTERVAL_S = 2.0
_SACCT_CACHE: dict[str, tuple[float, dict[str, dict[str, str]]]] = {}


def slurm_config() -> dict[str, Any]:
    """Cluster defaults: `$SUBNETSCOPE_SLURM_CONFIG` or `cache/slurm.json`, e.g.
    `{"partition": "gpu", "account": "lab", "additional_parameters": {"qos": "normal"}}`."""
    path = Path(os.environ.get("SUBNETSCOPE_SLURM_CONFIG", cache_root() / "slurm.json"))
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SubnetScopeError(f"SLURM config {path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise SubnetScopeError(f"SLURM config {path} must hold a JSON object")
    for key, value in config.items():
        check_slurm_value(key, value)
    return config


GPU_OPTIONS = ("gpus", "gpus_per_node", "gpus_per_task", "gres")


def slurm_parameters(kind: str, res, **extra: Any) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for a job of `kind` asking for `res`.

    GPUs go out as sbatch `--gpus=N` unless `slurm.json` names another option in `gpu_option`
    (`gpus_per_node`, `gpus_per_task`, or `gres` for `--gres=gpu:N` on older clusters);
    `gpu_partition` is the partition of jobs that ask for GPUs. A partition given with the job
    wins over both.
    """
    config = slurm_config()
    gpu_option = config.pop("gpu_option", "gpus")
    gpu_partition = config.pop("gpu_partition", None)
    if gpu_option not in GPU_OPTIONS:
        raise SubnetScopeError(
            f"slurm.json's gpu_option {gpu_option!r:.40} is not one of {', '.join(GPU_OPTIONS)}"
        )
    parameters: dict[str, Any] = {
        "job_name": f"subnetscope-{kind}",
        # submitit signals 90 s before the limit: below 2 minutes that is at once.
        "time": max(2, res.time_min),
        "cpus_per_task": res.cpus,
        "mem": f"{max(1, math.ceil(res.mem_gb or 1))}GB",
        "stderr_to_stdout": True,
        **extra,
    }
    additional = dict(config.pop("additional_parameters", None) or {})
    if res.gpus:
        if gpu_option == "gpus":  # submitit has no key of its own for sbatch --gpus
            additional["gpus"] = res.gpus
        elif gpu_option == "gres":
            parameters["gres"] = f"gpu:{res.gpus}"
        else:
            parameters[gpu_option] = res.gpus
        if gpu_partition:
            parameters["partition"] = gpu_partition
    for key, value in config.items():
        parameters.setdefault(key, value)
    if additional:
        parameters["additional_parameters"] = additional
    if res.partition:
        parameters["partition"] = res.partition
    for key, value in parameters.items():
        check_slurm_value(key, value)
    return parameters


def _sbatch(submit: Any) -> Any:
    """Run a submitit submission; sbatch's refusal (a GPU the cluster does not have, an unknown
    partition or account) becomes one sentence with sbatch's own reason."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        return submit()
    except (FailedJobError, FailedSubmissionError, OSError) as exc:
        lines = [line.strip() for line in str(exc).replace("sbatch: ", "\n").splitlines()]
        reason = next((line for line in lines if line.startswith("error")), str(exc).strip())
        raise SubnetScopeError(f"sbatch refused the job: {reason[:300]}") from exc


class SlurmRunner:
    name = "slurm"

    @staticmethod
    def _folder(view: JobView) -> Path:
        return view.path / "slurm"

    @staticmethod
    def _executor(view: JobView, **parameters: Any):
        import submitit

        try:
            executor = submitit.SlurmExecutor(folder=SlurmRunner._folder(view))
        except RuntimeError as exc:
            raise SubnetScopeError(
                "the SLURM backend needs a SLURM cluster (srun/sbatch on PATH); "
                "scripts/slurm.sh start runs a single-node one"
            ) from exc
        executor.update_parameters(**parameters)
        return executor

    @staticmethod
    def _command(view: JobView, job_dir: Path):
        import submitit

        command = processes.engine_command("jobs", "exec", str(job_dir))
        return submitit.helpers.CommandFunction(
            command, cwd=str(processes.PROJECT_ROOT), env=slurm_env(view)
        )

    def launch(self, view: JobView) -> dict[str, Any]:
        if view.spec.shards:
            return self._launch_split(view)
        executor = self._executor(view, **slurm_parameters(view.spec.kind, view.spec.resources))
        job = _sbatch(lambda: executor.submit(self._command(view, view.path)))
        return {"slurm_id": str(job.job_id), "message": "submitted to SLURM"}

    def _launch_split(self, view: JobView) -> dict[str, Any]:
        """The shards as one array (each task asks the job's resources), then the reduce as a
        job that starts once every task has ended (`afterany`: it reports a failed shard)."""
        from engine.jobs.split import shard_dirs
        from engine.jobs.status_file import update_status

        dirs = shard_dirs(view.path)
        res = view.spec.resources
        executor = self._executor(view, **slurm_parameters(view.spec.kind, res))
        tasks = _sbatch(lambda: executor.submit_array([self._command(view, d) for d in dirs]))
        array_id = str(tasks[0].job_id).split("_")[0]
        for shard_dir, task in zip(dirs, tasks, strict=True):
            update_status(shard_dir, slurm_id=str(task.job_id), message="submitted to SLURM")
        reduce_parameters = slurm_parameters(
            f"{view.spec.kind}-reduce", replace(res, gpus=0), dependency=f"afterany:{array_id}"
        )
        executor = self._executor(view, **reduce_parameters)
        try:
            reduce = _sbatch(lambda: executor.submit(self._command(view, view.path)))
        except SubnetScopeError:
            self._cancel_id(view, array_id)  # no reduce: the shards' work would be lost
            raise
        return {
            "slurm_id": str(reduce.job_id),
            "array_id": array_id,
            "message": f"{len(dirs)} shards submitted to SLURM as array {array_id}",
        }

    def slurm_state(self, slurm_id: str) -> str:
        """The job's state by sacct, parsed by submitit; at most one call per job every few
        seconds (watchers poll often, and sacct goes to the accounting database). An array
        task (`<array>_<i>`) is read from one sacct call for its whole array."""
        query = slurm_id.split("_")[0]
        checked, info = _SACCT_CACHE.get(query, (0.0, {}))
        if time.monotonic() - checked >= SACCT_MIN_INTERVAL_S:
            info = self._sacct(query)
            _SACCT_CACHE[query] = (time.monotonic(), info)
        return info.get(slurm_id, {}).get("State") or "UNKNOWN"

    @staticmethod
    def _sacct(query: str) -> dict[str, dict[str, str]]:
        from submitit.slurm.slurm import SlurmInfoWatcher

        command = ["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", query]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        return SlurmInfoWatcher().read_info(done.stdout) if done.returncode == 0 else {}

    def _slurm_final(self, view: JobView) -> dict[str, Any] | None:
        status = view.status
        if not status.slurm_id:
            return None
        fresh = status.heartbeat and time.time() - status.heartbeat < HEARTBEAT_STALE_S
        if status.state == "running" and fresh:
            return None  # the folder is alive: it wins over SLURM
        state = self.slurm_state(status.slurm_id).split()[0].rstrip("+")
        if state in _SLURM_FINAL:
            ours, message = _SLURM_FINAL[state]
            return {"state": ours, "message": message, "finished": now_iso()}
        return None

    def settle_shard(self, view: JobView) -> JobView:
        """A shard's folder brought up to date with what sacct says of its array task."""
        from engine.jobs.status_file import update_status_or_show

        changes = self._slurm_final(view)
        if not changes:
            return view
        return replace(view, status=update_status_or_show(view.path, **changes))

    def reconcile(self, view: JobView) -> dict[str, Any] | None:
        if view.spec.shards and view.status.array_id and not view.status.started:
            return self._reconcile_split(view)
        return self._slurm_final(view)

    def _reconcile_split(self, view: JobView) -> dict[str, Any] | None:
        """Before its reduce starts, a split job's status is its shards': progress, or the
        first failed shard's reason (the array and the reduce are then cancelled)."""
        from engine.jobs.split import cancel_shards, progress_of, shard_views

        shards = [self.settle_shard(v) for v in shard_views(view.path)]
        changes = progress_of(shards, view.spec.shards)
        if changes.get("state") in ("failed", "cancelled"):
            self.cancel(view)
            cancel_shards(view.path)
            return changes
        ended = self._slurm_final(view)  # the reduce job (a cancel, a failed submission)
        if ended:
            return {**changes, **ended}
        same = all(getattr(view.status, k) == v for k, v in changes.items())
        return None if same else changes

    def cancel(self, view: JobView, wait: bool = False, grace: float = CANCEL_GRACE_S) -> None:
        _cancel_marker(view, grace)
        for slurm_id in (view.status.array_id, view.status.slurm_id):
            if slurm_id:
                self._cancel_id(view, slurm_id)

    def _cancel_id(self, view: JobView, slurm_id: str) -> None:
        import submitit

        submitit.SlurmJob(folder=self._folder(view), job_id=slurm_id).cancel(check=False)


RUNNERS: dict[str, Runner] = {"local": LocalRunner(), "slurm": SlurmRunner()}


def get_runner(name: str) -> Runner:
    if name not in RUNNERS:
        raise SubnetScopeError(f"unknown backend '{name}'; use one of {', '.join(RUNNERS)}")
    return RUNNERS[name]
