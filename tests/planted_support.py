"""The demo's planted SparC3 run (tests/test_planted_pruning.py), started as soon as the session
has collected a test that needs it: the run takes one core for about 17 minutes, and the rest of
the suite, single-threaded, runs on the other core meanwhile instead of waiting for it."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURE = "demo_run"


@dataclass(frozen=True)
class Early:
    cache: Path
    job_id: str


_EARLY: list[Early] = []


def start_if_needed(items: list[pytest.Item]) -> None:
    """Submit the run in a cache of its own when a collected test uses the fixture."""
    if _EARLY or not any(FIXTURE in getattr(item, "fixturenames", ()) for item in items):
        return
    from engine.attribution.config import DEMO_SPARC3
    from engine.jobs import Resources, submit
    from tests.browser_support import isolated_cache

    cache = Path(tempfile.mkdtemp(prefix="subnetscope-planted-"))
    with pytest.MonkeyPatch.context() as mp:
        isolated_cache(mp, cache)
        view = submit("prune.sparc3", DEMO_SPARC3, resources=Resources(cpus=1))
    _EARLY.append(Early(cache, view.id))


def early_run() -> Early | None:
    return _EARLY[0] if _EARLY else None


def stop() -> None:
    """At the session's end: cancel the run if it is still going, drop its cache."""
    if not _EARLY:
        return
    from engine.jobs import cancel_job, get_job

    early = _EARLY.pop()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(early.cache))
        if get_job(early.job_id).status.state in ("queued", "running"):
            cancel_job(early.job_id, wait=True)
    shutil.rmtree(early.cache, ignore_errors=True)
