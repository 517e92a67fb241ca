"""The Runs view: new runs, the queue, the jobs table and one job's details."""

from __future__ import annotations

from dashboard.views.runs.panels import (
    jobs_panel,
    new_run,
    preselect_from_url,
    queue_settings_panel,
)

__all__ = ["jobs_panel", "new_run", "preselect_from_url", "queue_settings_panel"]
