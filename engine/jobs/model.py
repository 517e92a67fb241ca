"""A job's spec (what to run) and status (where it stands), as stored in its folder."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled")
STATES = (*ACTIVE_STATES, *FINAL_STATES)
BACKENDS = ("local", "slurm")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Resources:
    """What a job asks of the machine; the SLURM backend turns these into sbatch options."""

    cpus: int = field(default=1, metadata={"help": "CPU cores (sbatch --cpus-per-task)"})
    gpus: int = field(
        default=0,
        metadata={
            "help": "GPUs (sbatch --gpus; per array task for a split job); a job that gets none "
            "fails at its start instead of running on the CPU"
        },
    )
    mem_gb: float | None = field(
        default=None,
        metadata={
            "help": "memory in GB (sbatch --mem; the local queue's budget); default: the "
            "kind's estimate"
        },
    )
    time_min: int = field(default=60, metadata={"help": "wall-time limit in minutes"})
    partition: str | None = field(default=None, metadata={"help": "SLURM partition"})


@dataclass
class JobSpec:
    id: str
    kind: str
    params: dict[str, Any]
    backend: str = "local"
    resources: Resources = field(default_factory=Resources)
    engine_version: str = ""
    created: str = field(default_factory=now_iso)
    shards: int = 0  # a split job: how many shard folders it has under shards/ (0: not split)
    shard: int | None = None  # a shard of a split job: its index (0-based)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> JobSpec:
        """Raises ValueError with the reason when the spec is not one this engine wrote."""
        if not isinstance(data, dict):
            raise ValueError("spec.json does not hold a JSON object")
        data = dict(data)
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"spec.json has unknown keys: {', '.join(unknown)[:120]}")
        resources = data.get("resources") or {}
        if not isinstance(resources, dict) or set(resources) - set(Resources.__dataclass_fields__):
            raise ValueError("spec.json's resources are not cpus/gpus/mem_gb/time_min/partition")
        data["resources"] = Resources(**resources)
        for key in ("id", "kind"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"spec.json's {key} is not a string")
        if not isinstance(data.get("params"), dict):
            raise ValueError("spec.json's params are not a JSON object")
        if not isinstance(data.get("shards", 0), int) or data.get("shards", 0) < 0:
            raise ValueError("spec.json's shards is not a count")
        if data.get("shard") is not None and not isinstance(data["shard"], int):
            raise ValueError("spec.json's shard is not an index")
        if data.get("backend", "local") not in BACKENDS:
            raise ValueError(f"spec.json names an unknown backend {data.get('backend')!r}")
        return cls(**data)


@dataclass
class JobStatus:
    state: State = "queued"
    fraction: float = 0.0
    message: str = ""
    pid: int | None = None
    pid_start: int | None = None  # the process's start tick: guards against pid reuse
    slurm_id: str | None = None
    host: str | None = None
    exit_code: int | None = None
    started: str | None = None
    finished: str | None = None
    heartbeat: float | None = None  # unix time of the last sign of life
    position: int | None = None  # place in the local queue while it waits for a slot (1 = next)
    peak_rss_gb: float | None = None  # the job process's peak resident memory, once it has ended
    devices: dict | None = None  # the GPUs the job saw (engine.jobs.devices.seen_devices)
    resources: dict | None = None  # its last engine.jobs.resources sample, once it has ended
    array_id: str | None = None  # a split SLURM job: the array of its shards (`<id>_<index>`)
    shards_done: int | None = None  # a split job: shards that have succeeded
    updated: float = field(default_factory=time.time)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> JobStatus:
        if not isinstance(data, dict):
            raise ValueError("status.json does not hold a JSON object")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        status = cls(**known)
        if status.state not in STATES:
            raise ValueError(f"status.json names an unknown state {status.state!r:.40}")
        number = (int, float)
        if not isinstance(status.fraction, number) or isinstance(status.fraction, bool):
            raise ValueError("status.json's fraction is not a number")
        if not isinstance(status.message, str):
            raise ValueError("status.json's message is not text")
        for name in ("pid", "pid_start", "position"):
            value = getattr(status, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"status.json's {name} is not a whole number")
        return status


@dataclass(frozen=True)
class JobView:
    """What a reader sees of one job: spec + status + where its folder is."""

    path: Path
    spec: JobSpec
    status: JobStatus
    damaged: str | None = None  # why the folder cannot be read as a job; None when it can

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def is_waiting(self) -> bool:
        """A local job in the queue that has not been given a slot yet."""
        s = self.status
        return (
            self.damaged is None
            and self.spec.backend == "local"
            and s.state == "queued"
            and s.pid is None
        )

    @property
    def holds_slot(self) -> bool:
        """A local job that was started (it has a process) and has not ended."""
        s = self.status
        return self.spec.backend == "local" and s.state in ACTIVE_STATES and s.pid is not None

    def elapsed(self) -> float | None:
        if not self.status.started:
            return None
        try:
            start = datetime.fromisoformat(self.status.started).timestamp()
            end = (
                datetime.fromisoformat(self.status.finished).timestamp()
                if self.status.finished
                else time.time()
            )
        except (TypeError, ValueError):
            return None  # a damaged status: no time rather than no row
        return max(0.0, end - start)

    def summary(self) -> dict:
        """The JSON of `jobs show`/`jobs list`."""
        s = self.status
        return {
            "id": self.id,
            "kind": self.spec.kind,
            "backend": self.spec.backend,
            "state": s.state,
            "fraction": round(s.fraction, 4),
            "message": s.message,
            "pid": s.pid,
            "slurm_id": s.slurm_id,
            "exit_code": s.exit_code,
            "created": self.spec.created,
            "started": s.started,
            "finished": s.finished,
            "elapsed_s": None if self.elapsed() is None else round(self.elapsed(), 1),
            "queue_position": s.position,
            "peak_rss_gb": s.peak_rss_gb,
            "resources": s.resources,
            "devices": s.devices,
            "shards": self.spec.shards or None,
            "shards_done": s.shards_done,
            "array_id": s.array_id,
            "damaged": self.damaged,
            "params": self.spec.params,
            "path": str(self.path),
        }
