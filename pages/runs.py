"""Runs page: every job with its state; one job's params, live log, metrics and result."""

from __future__ import annotations

import streamlit as st

from dashboard.views import runs as view


def main() -> None:
    st.title("Runs")
    st.caption("Jobs run out of process (locally or on SLURM); their folders under cache/jobs.")
    view.new_run()
    view.queue_settings_panel()
    view.preselect_from_url()
    view.jobs_panel()


main()
