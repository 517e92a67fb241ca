"""Finished sweep and context-length results, as the Attention view lists them: the demo's first."""

from __future__ import annotations

from engine.attention.config import CONTEXT_KIND, DEMO_CONTEXT, DEMO_SWEEP, SWEEP_KIND
from engine.attention.jobs import CONTEXT_FILE, SWEEP_FILE
from engine.jobs.finished import FinishedResult, finished_results


def sweep_results(limit: int = 200) -> list[FinishedResult]:
    return finished_results(SWEEP_KIND, SWEEP_FILE, DEMO_SWEEP, limit=limit)


def context_results(limit: int = 200) -> list[FinishedResult]:
    return finished_results(CONTEXT_KIND, CONTEXT_FILE, DEMO_CONTEXT, limit=limit)
