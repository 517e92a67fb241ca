"""A new user on the ICA page, in a real browser: browse the components of templates built on the
demo model, lesion one and watch the text and perplexity change, start a masked SFT run."""

from __future__ import annotations

import pytest

from dashboard.serve import streamlit_server
from engine.jobs import list_jobs, submit, wait_job
from tests.browser_support import (
    CONTENT_TIMEOUT_MS,
    SHOTS,
    assert_no_unexpected_errors,
    isolated_cache,
    launch_browser,
    wait_for_app,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]
# The demo part's parameters on fewer layers and texts: the same pipeline in seconds.
SMALL = {
    "model": "demo",
    "datasets": ["demo-general", "demo-code"],
    "samples_per_ds": 20,
    "components": 8,
    "layers": "0-5",
    "max_length": 32,
}


def test_browse_lesion_and_train(tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with pytest.MonkeyPatch.context() as mp, sync_playwright() as pw:
        isolated_cache(mp, tmp_path / "cache")
        built = submit("ica.build_templates", SMALL)
        assert wait_job(built.id, timeout=300).status.state == "succeeded"
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        with streamlit_server(SHOTS / "ica.log") as (url, _):
            page.goto(f"{url}/ica")
            wait_for_app(page)
            page.wait_for_selector("text=Top-activating tokens", timeout=CONTENT_TIMEOUT_MS)
            page.screenshot(path=str(SHOTS / "ica-components.png"), full_page=True)

            page.get_by_text("Live toggles", exact=True).click()
            wait_for_app(page)
            page.get_by_role("button", name="Compare").click()
            page.wait_for_selector("text=neurons off", timeout=CONTENT_TIMEOUT_MS)
            wait_for_app(page)
            expect(page.get_by_text("Held-out perplexity")).to_have_count(2)
            page.screenshot(path=str(SHOTS / "ica-lesion.png"), full_page=True)

            page.get_by_text("Masked SFT", exact=True).click()
            wait_for_app(page)
            page.get_by_label("Steps").fill("2")
            page.get_by_label("Steps").press("Enter")
            wait_for_app(page)
            page.get_by_role("button", name="Start run").click()
            page.wait_for_selector("text=Masked LoRA SFT", timeout=CONTENT_TIMEOUT_MS)
            [run] = list_jobs(kind="train.sft_masked")
            assert run.spec.params["steps"] == 2 and run.spec.params["mask_mode"] == "lesion"
            assert wait_job(run.id, timeout=600).status.state == "succeeded"
            page.reload()
            wait_for_app(page)
            page.get_by_text("Masked SFT", exact=True).click()
            page.wait_for_selector("text=Finished runs", timeout=CONTENT_TIMEOUT_MS)
            wait_for_app(page)
            page.screenshot(path=str(SHOTS / "ica-sft.png"), full_page=True)
            assert_no_unexpected_errors(page)
        browser.close()
