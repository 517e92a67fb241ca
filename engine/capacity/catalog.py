"""Finished capacity-meter results, as the Capacity view lists them: newest first."""

from __future__ import annotations

from engine.capacity.config import KIND, RUNS_FILE
from engine.jobs.finished import FinishedResult, finished_results


def meter_results(limit: int = 200) -> list[FinishedResult]:
    """Succeeded `capacity.meter` jobs with their runs table (no demo part: none is first)."""
    return finished_results(KIND, RUNS_FILE, {}, limit=limit)
