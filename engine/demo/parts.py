"""Demo parts: the state of each part of engine/demo/registry.py, and `build_demo`.

A part is ready when its check says so (by default: a job of its kind with its params has
succeeded). `build_demo` submits the parts that are neither ready nor being built.
"""

from __future__ import annotations

from dataclasses import dataclass

from filelock import FileLock

from engine.demo.registry import PARTS, DemoPart
from engine.errors import SubnetScopeError
from engine.jobs import JobStore, JobView, list_jobs, load_kinds, submit
from engine.jobs.model import ACTIVE_STATES


@dataclass(frozen=True)
class PartState:
    part: DemoPart
    state: str  # ready | building | failed | missing
    job: JobView | None = None

    def summary(self) -> dict:
        job = self.job
        return {
            "part": self.part.name,
            "title": self.part.title,
            "state": self.state,
            "view": self.part.view,
            "job_id": job.id if job else None,
            "fraction": job.status.fraction if job else None,
            "message": job.status.message if job else "",
        }


_PARTS: dict[str, DemoPart] = {part.name: part for part in PARTS}


def demo_part(part: DemoPart) -> DemoPart:
    """Add a part beyond engine/demo/registry.py's (plugins and tests, through a kinds module)."""
    _PARTS[part.name] = part
    return part


def load_parts() -> dict[str, DemoPart]:
    load_kinds()  # extra kinds modules ($SUBNETSCOPE_JOB_MODULES) may add parts
    return dict(_PARTS)


def _jobs_of(part: DemoPart, jobs: list[JobView]) -> list[JobView]:
    return [j for j in jobs if j.spec.kind == part.job_kind and _same(j.spec.params, part)]


def _same(params: dict, part: DemoPart) -> bool:
    return all(params.get(k) == v for k, v in part.params.items())


def demo_status(store: JobStore | None = None) -> list[PartState]:
    jobs = list_jobs(store=store)  # newest first
    states = []
    for part in load_parts().values():
        mine = _jobs_of(part, jobs)
        latest = mine[0] if mine else None
        succeeded = next((j for j in mine if j.status.state == "succeeded"), None)
        ready = part.is_ready() if part.is_ready is not None else succeeded is not None
        if ready:
            states.append(PartState(part, "ready", succeeded or latest))
        elif latest is not None and latest.status.state in ACTIVE_STATES:
            states.append(PartState(part, "building", latest))
        elif latest is not None and latest.status.state == "failed":
            states.append(PartState(part, "failed", latest))
        else:
            states.append(PartState(part, "missing", latest))
    return states


def build_demo(
    only: str | None = None,
    *,
    backend: str = "local",
    retry_failed: bool = True,
    store: JobStore | None = None,
) -> list[JobView]:
    """Submit the jobs of the parts that are missing (or failed); returns the submitted jobs.

    Idempotent across threads and processes: the look and the submits happen under one file
    lock, so however many browser sessions, dashboards or shells ask at once, each part is
    submitted once (the second asker sees the first one's job as building)."""
    store = store or JobStore()
    with FileLock(str(store.root / ".demo.lock"), timeout=120):
        states = demo_status(store)
        if only is not None and only not in {s.part.name for s in states}:
            known = ", ".join(s.part.name for s in states)
            raise SubnetScopeError(f"unknown demo part '{only}'; parts: {known}")
        wanted = {"missing", "failed"} if retry_failed else {"missing"}
        submitted = []
        for state in states:
            if (only and state.part.name != only) or state.state not in wanted:
                continue
            params = dict(state.part.params)
            submitted.append(submit(state.part.job_kind, params, backend=backend, store=store))
        return submitted
