"""The real-browser walk: Debian's Chromium, driven by Playwright, opens every dashboard page."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.navigation import all_pages
from dashboard.serve import ROOT, streamlit_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "tests" / "artifacts" / "browser"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The script's first run loads the demo model; later pages come from the cache.
CONTENT_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: install Debian's chromium and chromium-driver")
    from playwright.sync_api import sync_playwright

    from engine.models.demo import demo_model_dir, ensure_demo_model

    real_demo = ensure_demo_model()
    with pytest.MonkeyPatch.context() as mp:
        # The server and this test share a cache of their own: the jobs they start stay out of
        # the checkout's, and the demo model is the checkout's, linked in.
        mp.setenv("SUBNETSCOPE_CACHE", str(tmp_path_factory.mktemp("cache")))
        demo_model_dir().parent.mkdir(parents=True)
        demo_model_dir().symlink_to(real_demo, target_is_directory=True)
        with streamlit_server(SHOTS / "streamlit.log") as (url, _), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield url, page
            browser.close()


def wait_for_app(page) -> None:
    """Content arrives over the websocket after the HTML: wait for a heading and an idle script."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=CONTENT_TIMEOUT_MS)
    # The status widget shows only after a delay: a quick page can look idle mid-run without this.
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=CONTENT_TIMEOUT_MS
    )
    page.wait_for_selector(
        '[data-testid="stStatusWidget"]', state="detached", timeout=CONTENT_TIMEOUT_MS
    )
    assert page.get_by_text("Page not found").count() == 0


@pytest.mark.parametrize("spec", all_pages(), ids=lambda p: p.url_path)
def test_every_page_renders_without_exception(browser_page, spec) -> None:
    url, page = browser_page
    page.goto(f"{url}/{spec.url}")
    wait_for_app(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{spec.url_path}.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_model_page_answers_a_prompt(browser_page) -> None:
    url, page = browser_page
    page.goto(url)
    wait_for_app(page)
    page.get_by_label("Prompt").fill("What is the capital of France?")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_selector("text=Paris", timeout=CONTENT_TIMEOUT_MS)
    page.screenshot(path=str(SHOTS / "model-generation.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


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
    assert page.locator('[data-testid="stException"]').count() == 0
    before = len(sent)
    page.wait_for_timeout(3_000)
    page.remove_listener("websocket", on_websocket)
    assert len(sent) == before, "the page still refreshes itself after the job ended"
