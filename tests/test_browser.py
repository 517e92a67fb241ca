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
def browser_page():
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: install Debian's chromium and chromium-driver")
    from playwright.sync_api import sync_playwright

    with streamlit_server(SHOTS / "streamlit.log") as (url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield url, page
        browser.close()


def wait_for_app(page) -> None:
    """Content arrives over the websocket after the HTML: wait for a heading and an idle script."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=CONTENT_TIMEOUT_MS)
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
