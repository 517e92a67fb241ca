"""A new user on the blender's Generate view, in a real browser: three typed prompts make an
adapter with a tiny trained generator, it is saved, picked in the sidebar and blended with the
teachers."""

from __future__ import annotations

import pytest

from dashboard.serve import streamlit_server
from tests.browser_support import (
    CONTENT_TIMEOUT_MS,
    SHOTS,
    assert_no_unexpected_errors,
    launch_browser,
    wait_for_app,
)
from tests.generator_support import build_generator_workspace

pytestmark = [pytest.mark.slow, pytest.mark.browser]
TYPED = ("What is 71 - 15?", "What is 40 - 22?", "What is 93 - 58?")


def show(page, view: str) -> None:
    page.locator('[data-testid="stMain"]').get_by_text(view, exact=True).first.click()
    wait_for_app(page)


def test_generate_save_and_blend(tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    workspace = build_generator_workspace(tmp_path)
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as pw:
        mp.setenv("SUBNETSCOPE_CACHE", str(workspace["cache"]))
        mp.setenv("SUBNETSCOPE_MODEL_ROOTS", str(workspace["models"]))
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        with streamlit_server(SHOTS / "lora-generate.log") as (url, _):
            page.goto(f"{url}/lora")
            wait_for_app(page)
            show(page, "Generate")
            page.wait_for_selector("text=Generate an adapter from prompts")
            prompts = page.locator(".st-key-lora_gen_prompts_" + workspace["generator"])
            prompts.locator("textarea").fill("\n".join(TYPED))
            prompts.locator("textarea").press("Control+Enter")
            wait_for_app(page)
            page.locator(".st-key-lora_gen_go button").click()
            page.wait_for_selector("text=Its place among the teachers", timeout=CONTENT_TIMEOUT_MS)
            expect(page.get_by_text(TYPED[0]).first).to_be_visible(timeout=CONTENT_TIMEOUT_MS)
            page.screenshot(path=str(SHOTS / "lora-generate.png"), full_page=True)

            name = page.locator(".st-key-lora_gen_save_name input")
            name.fill("typed")
            name.press("Enter")
            wait_for_app(page)
            page.locator(".st-key-lora_gen_save_go button").click()
            page.wait_for_selector("text=Saved to", timeout=CONTENT_TIMEOUT_MS)
            assert (workspace["cache"] / "adapters" / "typed" / "generated.json").is_file()

            # Blend it with the teachers: pick it in the sidebar, its slider appears.
            picker = page.locator(".st-key-adapters input")
            picker.click()
            option = page.get_by_role("option", name="typed")
            expect(option).to_be_visible(timeout=CONTENT_TIMEOUT_MS)  # the list follows saves
            option.click()
            page.keyboard.press("Escape")
            wait_for_app(page)
            show(page, "Delta map")
            expect(page.get_by_text("typed", exact=True).first).to_be_visible(
                timeout=CONTENT_TIMEOUT_MS
            )
            expect(page.locator(".st-key-lora_w_0")).to_be_visible(timeout=CONTENT_TIMEOUT_MS)
            page.wait_for_selector("text=Delta activations", timeout=CONTENT_TIMEOUT_MS)
            page.screenshot(path=str(SHOTS / "lora-generate-blend.png"), full_page=True)
            assert_no_unexpected_errors(page)
        browser.close()
