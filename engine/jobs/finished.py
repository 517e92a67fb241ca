"""Finished results of one job kind, as the views list them: the demo's first, then newest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.jobs.api import list_jobs
from engine.jobs.files import RESULT
from engine.jobs.model import JobView


@dataclass(frozen=True)
class FinishedResult:
    view: JobView
    path: Path  # the job's result folder
    is_demo: bool  # started with the demo part's params

    @property
    def params(self) -> dict[str, Any]:
        return self.view.spec.params


def finished_results(
    kind: str, holds: str, demo_params: dict[str, Any], limit: int = 100
) -> list[FinishedResult]:
    """Succeeded `kind` jobs whose result folder holds the file `holds`, the one the demo part
    started first, then the rest newest first."""
    found = []
    for view in list_jobs(kind=kind, states=("succeeded",), limit=limit):
        path = view.path / RESULT
        if (path / holds).is_file():
            params = view.spec.params
            demo = all(params.get(k) == v for k, v in demo_params.items())
            found.append(FinishedResult(view, path, demo))
    found.sort(key=lambda r: not r.is_demo)  # stable: newest first within each group
    return found
