"""A new user on the Set block decoding page, in a real browser: an SBD fine-tune run as a job, its
generation coloured by forward pass, the threshold moved from 0 to 2 nats, then the trade-off
view. The fine-tune is a tiny Llama's (seconds, not the demo model's minutes): the page's
numbers against the engine's are the AppTests' (tests/test_page_sbd.py); this walks the page."""

from __future__ import annotations

import pytest

from dashboard.serve import streamlit_server
from engine.jobs import submit, wait_job
from tests.browser_support import (
    CONTENT_TIMEOUT_MS,
    SHOTS,
    assert_no_unexpected_errors,
    isolated_cache,
    launch_browser,
    wait_for_app,
)
from tests.tiny import save_tiny_folder

pytestmark = [pytest.mark.slow, pytest.mark.browser]
# The demo part's recipe on a tiny model in a few steps: the plumbing of a real run in seconds.
QUICK = {
    "dataset": "demo-arithmetic",
    "template": "basic",
    "steps": 3,
    "batch_size": 4,
    "lr": 1e-3,
    "max_length": 32,
    "eval_texts": 8,
    "eval_examples": 3,
    "thresholds": [0.0, 2.0],
    "eval_block_size": 8,
    "max_new_tokens": 16,
    "report_to": "none",
}


def metric(page, label: str):
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return box.locator('[data-testid="stMetricValue"]')


def slide(page, key: str, end: str) -> None:
    """Move a keyed slider to one end from the keyboard, as a user would."""
    thumb = page.locator(f".st-key-{key}").get_by_role("slider")
    thumb.focus()
    thumb.press(end)
    thumb.blur()
    wait_for_app(page)


def test_threshold_then_trade_off(tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with pytest.MonkeyPatch.context() as mp, sync_playwright() as pw:
        isolated_cache(mp, tmp_path / "cache")
        save_tiny_folder(tmp_path / "tiny-llama", "llama")
        run = submit("sbd.train", {**QUICK, "model": str(tmp_path / "tiny-llama")})
        assert wait_job(run.id, timeout=1200).status.state == "succeeded"
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        with streamlit_server(SHOTS / "sbd.log") as (url, _):
            page.goto(f"{url}/sbd")
            wait_for_app(page)
            reveal_map = "text=Which pass revealed which token"
            page.wait_for_selector(reveal_map, timeout=CONTENT_TIMEOUT_MS)
            expect(page.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible(
                timeout=CONTENT_TIMEOUT_MS
            )
            autoregressive = metric(page, "Forward passes, autoregressive").inner_text()

            # γ = 0: every pass reveals one slot (the lowest entropy is the only one allowed).
            slide(page, "sbd_threshold", "Home")
            expect(page.get_by_text("γ = 0.00")).to_be_visible(timeout=CONTENT_TIMEOUT_MS)
            wait_for_app(page)
            one_each = int(metric(page, "Forward passes, SBD").inner_text())
            page.screenshot(path=str(SHOTS / "sbd-gamma-0.png"), full_page=True)

            # γ = 2 nats: a pass may reveal several slots; never more passes than at γ = 0.
            slide(page, "sbd_threshold", "End")
            expect(page.get_by_text("γ = 2.00")).to_be_visible(timeout=CONTENT_TIMEOUT_MS)
            wait_for_app(page)
            assert int(metric(page, "Forward passes, SBD").inner_text()) <= one_each
            # Autoregressive decoding does not depend on γ.
            expect(metric(page, "Forward passes, autoregressive")).to_have_text(autoregressive)
            page.screenshot(path=str(SHOTS / "sbd-gamma-2.png"), full_page=True)

            page.locator('[data-testid="stMain"]').get_by_text("Trade-off", exact=True).click()
            wait_for_app(page)
            trade_off = "text=Quality against forward passes"
            page.wait_for_selector(trade_off, timeout=CONTENT_TIMEOUT_MS)
            expect(page.locator('[data-testid="stVegaLiteChart"]')).to_have_count(
                2, timeout=CONTENT_TIMEOUT_MS
            )
            expect(metric(page, "Accuracy, autoregressive")).to_be_visible()
            # The launcher is the view's last section: the page is drawn to its end.
            expect(page.get_by_role("button", name="Evaluate")).to_be_visible(
                timeout=CONTENT_TIMEOUT_MS
            )
            page.screenshot(path=str(SHOTS / "sbd-trade-off.png"), full_page=True)
            assert_no_unexpected_errors(page)
        browser.close()
