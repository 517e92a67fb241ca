"""A new user on the Attention page, in a real browser: open it on the demo model, see the heads'
heatmap and which look local, make layer 20 local and watch the perplexity change."""

from __future__ import annotations

import pytest

from dashboard.serve import streamlit_server
from tests.browser_support import (
    CONTENT_TIMEOUT_MS,
    SHOTS,
    assert_no_unexpected_errors,
    isolated_cache,
    launch_browser,
    wait_for_app,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def metric(page, label: str):
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return box.locator('[data-testid="stMetricValue"]')


def test_heads_then_make_layer_20_local(tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with pytest.MonkeyPatch.context() as mp, sync_playwright() as pw:
        isolated_cache(mp, tmp_path / "cache")
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        with streamlit_server(SHOTS / "attention.log") as (url, _):
            page.goto(f"{url}/attention")
            wait_for_app(page)
            page.wait_for_selector("text=Every head, every layer", timeout=CONTENT_TIMEOUT_MS)
            expect(page.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible(
                timeout=CONTENT_TIMEOUT_MS
            )
            expect(metric(page, "Local · global")).to_have_text("0 · 30")  # the demo: all global
            # The heatmap can show window share, which says which heads act local anyway.
            page.locator(".st-key-attention_stat").get_by_role("combobox").click()
            page.get_by_role("option", name="share inside the window").click()
            wait_for_app(page)
            page.screenshot(path=str(SHOTS / "attention-heads.png"), full_page=True)

            page.locator('[data-testid="stMain"]').get_by_text("Localize", exact=True).click()
            wait_for_app(page)
            base = metric(page, "Perplexity, base")
            expect(base).to_be_visible(timeout=CONTENT_TIMEOUT_MS)
            page.locator(".st-key-attention_local").get_by_role("combobox").click()
            page.keyboard.type("20")  # the list is long: filter it as a user would
            page.get_by_role("option", name="20", exact=True).click()
            page.keyboard.press("Escape")
            local = metric(page, "Perplexity, 20 local")
            expect(local).to_be_visible(timeout=CONTENT_TIMEOUT_MS)
            wait_for_app(page)
            assert float(local.inner_text()) != float(base.inner_text())
            page.screenshot(path=str(SHOTS / "attention-localize.png"), full_page=True)
            assert_no_unexpected_errors(page)
        browser.close()
