"""A new user on the LoRA blender, in a real browser: three task adapters trained on the demo
model, drag a slider and watch the blend and the delta map move, save the blend, start ReLoRA."""

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
# The demo adapters' recipe in a few steps: real trained adapters in about a minute.
QUICK = {
    "model": "demo",
    "steps": 3,
    "batch_size": 2,
    "max_length": 32,
    "lora_rank": 4,
    "lora_alpha": 8.0,
    "lr": 1e-3,
    "rank_every": 3,
    "eval_texts": 2,
}
SOURCES = ("demo-general", "demo-code", "demo-arithmetic")


def metric(page, label: str):
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return box.locator('[data-testid="stMetricValue"]')


def slide(page, key: str, end: str) -> None:
    """Move a keyed slider to one end from the keyboard, as a user would, and wait for the app."""
    thumb = page.locator(f".st-key-{key}").get_by_role("slider")
    thumb.focus()
    thumb.press(end)
    thumb.blur()
    wait_for_app(page)


def show(page, view: str) -> None:
    page.locator('[data-testid="stMain"]').get_by_text(view, exact=True).first.click()
    wait_for_app(page)


def test_blend_live_save_and_relora(tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with pytest.MonkeyPatch.context() as mp, sync_playwright() as pw:
        cache = isolated_cache(mp, tmp_path / "cache")
        jobs = [submit("train.lora", {**QUICK, "dataset": d}) for d in SOURCES]
        for job in jobs:
            assert wait_job(job.id, timeout=600).status.state == "succeeded"
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        with streamlit_server(SHOTS / "lora.log") as (url, _):
            page.goto(f"{url}/lora")
            wait_for_app(page)
            page.wait_for_selector("text=Generations side by side", timeout=CONTENT_TIMEOUT_MS)
            page.screenshot(path=str(SHOTS / "lora-generations.png"), full_page=True)
            before = metric(page, "Blend error").inner_text()

            # Drag the first adapter's slider to its end: the blend is recomputed and regenerated.
            # The slider sends its value after a debounce, so the script may not have started when
            # the page first looks idle: wait for the metric itself to move.
            slide(page, "lora_w_0", "End")
            expect(metric(page, "Blend error")).not_to_have_text(before, timeout=CONTENT_TIMEOUT_MS)

            show(page, "Delta map")
            page.wait_for_selector("text=Delta activations", timeout=CONTENT_TIMEOUT_MS)
            expect(page.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible(
                timeout=CONTENT_TIMEOUT_MS
            )
            slide(page, "lora_w_1", "Home")  # weight −1: the blend moves away from that adapter
            page.screenshot(path=str(SHOTS / "lora-deltas.png"), full_page=True)

            show(page, "Save")
            page.get_by_label("Name", exact=True).fill("mix")
            page.get_by_label("Name", exact=True).press("Enter")
            wait_for_app(page)
            page.get_by_role("button", name="Save").click()
            page.wait_for_selector("text=Saved to", timeout=CONTENT_TIMEOUT_MS)
            assert (cache / "adapters" / "mix" / "adapter_model.safetensors").is_file()

            show(page, "Train")
            show(page, "ReLoRA")
            # LoRA's form has a "Steps" field too: fill only once ReLoRA's own form is drawn.
            page.get_by_label("Merge and reset every k steps", exact=True).wait_for(
                timeout=CONTENT_TIMEOUT_MS
            )
            for label, value in (("Steps", "4"), ("Merge and reset every k steps", "3")):
                # The LoRA form's stale "Steps" may linger while the rerun replaces it.
                expect(page.get_by_label(label, exact=True)).to_have_count(
                    1, timeout=CONTENT_TIMEOUT_MS
                )
                page.get_by_label(label, exact=True).fill(value)
                page.get_by_label(label, exact=True).press("Enter")
                wait_for_app(page)
            page.get_by_role("button", name="Start run").click()
            page.wait_for_selector("text=ReLoRA run", timeout=CONTENT_TIMEOUT_MS)
            [run] = list_jobs(kind="train.relora")
            assert (run.spec.params["steps"], run.spec.params["reset_every"]) == (4, 3)
            assert wait_job(run.id, timeout=600).status.state == "succeeded"
            page.reload()
            wait_for_app(page)
            show(page, "Train")
            page.wait_for_selector("text=Rank evolution", timeout=CONTENT_TIMEOUT_MS)
            page.screenshot(path=str(SHOTS / "lora-train.png"), full_page=True)
            assert_no_unexpected_errors(page)
        browser.close()
