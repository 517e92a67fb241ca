"""A new user's journey with jobs, in a real browser: start a perplexity run from the Model page,
watch it on Runs, cancel another run, restart the dashboard, and find both with the right states."""

from __future__ import annotations

import time

import pytest

from dashboard.serve import streamlit_server
from engine.jobs import get_job, list_jobs, submit, wait_job
from tests.browser_support import (
    CONTENT_TIMEOUT_MS,
    SHOTS,
    assert_no_unexpected_errors,
    isolated_cache,
    launch_browser,
    wait_for_app,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_runs_survive_a_dashboard_restart(tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with pytest.MonkeyPatch.context() as mp, sync_playwright() as pw:
        isolated_cache(mp, tmp_path / "cache")
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        with streamlit_server(SHOTS / "journey-1.log") as (url, _):
            page.goto(f"{url}/model")
            wait_for_app(page)
            page.get_by_label("Max tokens").fill("128")
            page.get_by_role("button", name="Measure perplexity").click()
            page.wait_for_selector("text=Open in Runs", timeout=CONTENT_TIMEOUT_MS)
            [perplexity] = list_jobs(kind="eval.perplexity")
            assert wait_job(perplexity.id, timeout=120).status.state == "succeeded"

            # Another run, started elsewhere (as from the CLI), cancelled from the Runs page.
            sleeper = submit("diagnostics.sleep", {"seconds": 120, "steps": 240})
            page.goto(f"{url}/runs?job={sleeper.id}")
            wait_for_app(page)
            page.get_by_role("button", name="Cancel", exact=True).click()
            deadline = time.monotonic() + 30
            while get_job(sleeper.id).status.state != "cancelled":
                assert time.monotonic() < deadline, get_job(sleeper.id).status
                time.sleep(0.2)
            page.screenshot(path=str(SHOTS / "journey-cancelled.png"), full_page=True)

        with streamlit_server(SHOTS / "journey-2.log") as (url, _):
            page.goto(f"{url}/runs")
            wait_for_app(page)
            table = page.locator('[data-testid="stDataFrame"]').first
            table.wait_for(timeout=CONTENT_TIMEOUT_MS)
            page.screenshot(path=str(SHOTS / "journey-after-restart.png"), full_page=True)
            for job_id, state in ((perplexity.id, "succeeded"), (sleeper.id, "cancelled")):
                page.goto(f"{url}/runs?job={job_id}")
                wait_for_app(page)
                expect(page.get_by_text(state, exact=True).first).to_be_visible()
                assert_no_unexpected_errors(page)
        browser.close()
