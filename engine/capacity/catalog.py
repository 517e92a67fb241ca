"""Finished capacity-meter results, as the Capacity view lists them: the demo's first."""

from __future__ import annotations

from engine.capacity.config import DEMO_METER, KIND, RUNS_FILE
from engine.jobs.finished import FinishedResult, finished_results


def meter_results(limit: int = 200) -> list[FinishedResult]:
    """Succeeded `capacity.meter` jobs with their runs table, the demo part's first."""
    return finished_results(KIND, RUNS_FILE, DEMO_METER, limit=limit)
