"""The issue's walk in a real browser: from the pruning page's top candidate to its passport —
ICA membership, whether RL moved it, whether an adapter writes into it — and the overlap matrix.

The workspace is a tiny model with an artifact of every view (tests/passport_support.py), its
checkpoint owned by a GRPO job, served by a real Streamlit server with the cache pointed at it.
"""

from __future__ import annotations

import re

import pytest

from dashboard.serve import streamlit_server
from tests.browser_support import (
    CONTENT_TIMEOUT_MS,
    SHOTS,
    assert_no_unexpected_errors,
    launch_browser,
    wait_for_app,
)
from tests.passport_support import built_workspace

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_from_the_top_candidate_to_its_passport_and_the_overlaps(tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from engine.attribution.results import list_runs, load_result

    with built_workspace(tmp_path, run_kind="train.grpo") as ws, sync_playwright() as pw:
        top = load_result(list_runs()[0].path).candidates.sort_values("rank").iloc[0]
        name = f"L{int(top['layer'])}.{int(top['neuron'])}"
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        with streamlit_server(SHOTS / "passport-journey.log") as (url, _):
            page.goto(f"{url}/pruning")
            wait_for_app(page)
            link = page.get_by_role("link", name=f"Passport of neuron {name} →")
            link.wait_for(timeout=CONTENT_TIMEOUT_MS)
            page.screenshot(path=str(SHOTS / "passport-from-pruning.png"), full_page=True)
            link.click()
            page.get_by_role("heading", name=f"Neuron {name}").wait_for(timeout=CONTENT_TIMEOUT_MS)
            wait_for_app(page)
            assert "/passport?" in page.url and f"neuron={int(top['neuron'])}" in page.url
            main = page.locator('[data-testid="stMain"]')
            expect(main).to_contain_text("Pruning candidate #1 of", timeout=CONTENT_TIMEOUT_MS)
            text = main.inner_text()
            assert re.search(r"ICA component|In no ICA component", text)
            assert re.search(r"GRPO \(RL\) (moved|did not move) it", text)
            assert re.search(r"Adapter planted writes into it|No adapter writes into it", text)
            page.screenshot(path=str(SHOTS / "passport.png"), full_page=True)

            # The passport's own charts are already on the page: wait for the matrix's sets.
            main.get_by_text("Overlaps", exact=True).click()
            expect(main).to_contain_text("pruning:100", timeout=CONTENT_TIMEOUT_MS)
            wait_for_app(page)
            page.screenshot(path=str(SHOTS / "passport-overlaps.png"), full_page=True)
            assert_no_unexpected_errors(page)
        browser.close()
        assert ws["model"]
