"""The real-browser walk: Debian's Chromium, driven by Playwright, opens every dashboard page."""

from __future__ import annotations

import pytest

from dashboard.navigation import all_pages
from dashboard.serve import streamlit_server
from tests.browser_support import (
    CONTENT_TIMEOUT_MS,
    SHOTS,
    assert_no_unexpected_errors,
    isolated_cache,
    launch_browser,
    require_chromium,
    wait_for_app,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Error boxes a page is meant to show on the walk's empty workspace (a part of each box's text),
# by URL path. Any other error box, or any exception, fails the walk.
EXPECTED_ERRORS: dict[str, tuple[str, ...]] = {}


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    require_chromium()
    with pytest.MonkeyPatch.context() as mp:
        isolated_cache(mp, tmp_path_factory.mktemp("cache"))
        with streamlit_server(SHOTS / "streamlit.log") as (url, _), sync_playwright() as pw:
            browser = launch_browser(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield url, page
            browser.close()


@pytest.mark.parametrize("spec", all_pages(), ids=lambda p: p.url_path)
def test_every_page_renders_without_exception(browser_page, spec) -> None:
    url, page = browser_page
    page.goto(f"{url}/{spec.url}")
    wait_for_app(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{spec.url_path}.png"), full_page=True)
    assert_no_unexpected_errors(page, EXPECTED_ERRORS.get(spec.url_path, ()))


def test_model_page_answers_a_prompt(browser_page) -> None:
    url, page = browser_page
    page.goto(f"{url}/model")
    wait_for_app(page)
    page.get_by_label("Prompt").fill("What is the capital of France?")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_selector("text=Paris", timeout=CONTENT_TIMEOUT_MS)
    page.screenshot(path=str(SHOTS / "model-generation.png"), full_page=True)
    assert_no_unexpected_errors(page)


def test_runs_page_follows_a_job_until_it_ends(browser_page) -> None:
    from engine.jobs import submit

    url, page = browser_page
    sent: list = []  # what the browser sends: a live fragment asks for a rerun each tick

    def on_websocket(ws) -> None:
        ws.on("framesent", lambda payload: sent.append(payload))

    page.on("websocket", on_websocket)
    view = submit("diagnostics.sleep", {"seconds": 8, "steps": 8})
    page.goto(f"{url}/runs?job={view.id}")
    wait_for_app(page)
    # No reload from here on: the live fragment alone must carry the page to the job's end.
    main = page.locator('[data-testid="stMain"]')
    cancel = main.locator(".st-key-runs_detail_cancel")  # a keyed widget carries its key
    cancel.wait_for(timeout=30_000)  # while it runs
    progress = main.get_by_test_id("stProgress")
    progress.get_by_text("done", exact=True).wait_for(timeout=60_000)  # its last message
    cancel.wait_for(state="detached", timeout=10_000)
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    charts.nth(1).wait_for(timeout=30_000)  # metrics and progress
    page.screenshot(path=str(SHOTS / "runs-job.png"), full_page=True)
    assert_no_unexpected_errors(page)
    before = len(sent)
    page.wait_for_timeout(3_000)
    page.remove_listener("websocket", on_websocket)
    assert len(sent) == before, "the page still refreshes itself after the job ended"


def test_tflite_findings_and_graph_in_the_browser(browser_page) -> None:
    url, page = browser_page
    page.goto(f"{url}/tflite")
    wait_for_app(page)
    page.get_by_text("Findings", exact=True).click()
    # Data-grid cells are drawn on a canvas; their accessible copies exist but stay hidden.
    page.wait_for_selector(
        "text=AltUp: 4 parallel residual streams", state="attached", timeout=CONTENT_TIMEOUT_MS
    )
    page.get_by_text("Graph", exact=True).click()
    page.wait_for_selector('[data-testid="stGraphVizChart"] svg', timeout=CONTENT_TIMEOUT_MS)
    wait_for_app(page)
    page.screenshot(path=str(SHOTS / "tflite-graph.png"), full_page=True)
    assert_no_unexpected_errors(page)
