"""Jobs in tests that fake their results: queued, never started, finished by the test itself."""

from __future__ import annotations

import pytest


def hold_local_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local jobs wait in the queue without a process; the test writes their results and
    their final status (update_status) as a job would."""
    from engine.jobs import queue

    monkeypatch.setattr(queue, "_start", lambda view: view)


def events_of(ctx) -> list[dict]:
    """The events a job run in-process reported through its JobContext (events.jsonl)."""
    from engine.jobs.files import EVENTS, read_events

    return read_events(ctx.job_dir / EVENTS)
