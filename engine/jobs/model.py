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
    gpus: int = field(default=0, metadata={"help": "GPUs per node (sbatch --gpus-per-node)"})
    mem_gb: float = field(default=8.0, metadata={"help": "memory in GB (sbatch --mem)"})
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

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> JobSpec:
        data = dict(data)
        data["resources"] = Resources(**data.get("resources", {}))
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
    updated: float = field(default_factory=time.time)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> JobStatus:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class JobView:
    """What a reader sees of one job: spec + status + where its folder is."""

    path: Path
    spec: JobSpec
    status: JobStatus

    @property
    def id(self) -> str:
        return self.spec.id

    def elapsed(self) -> float | None:
        if not self.status.started:
            return None
        start = datetime.fromisoformat(self.status.started).timestamp()
        end = (
            datetime.fromisoformat(self.status.finished).timestamp()
            if self.status.finished
            else time.time()
        )
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
            "params": self.spec.params,
            "path": str(self.path),
        }
