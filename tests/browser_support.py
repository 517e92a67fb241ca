"""What the browser tests share: Debian's Chromium via Playwright, an isolated cache, waits."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from dashboard.serve import ROOT

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
# What a page shows for a traceback, and for `st.error` (Streamlit names the box by its kind).
ERROR_BOXES = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: install Debian's chromium and chromium-driver")


def isolated_cache(mp: pytest.MonkeyPatch, folder: Path) -> Path:
    """Point the engine (and servers started from here) at a cache of its own, with the
    checkout's demo model linked in, so the jobs a test starts stay out of the real cache."""
    from engine.models.demo import demo_model_dir, ensure_demo_model
    from engine.paths import cache_root

    real_demo = ensure_demo_model()
    testdata = cache_root() / "testdata"
    mp.setenv("SUBNETSCOPE_CACHE", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    if testdata.is_dir():  # real models fetched by setup (mediapipe's .tflite files)
        (folder / "testdata").symlink_to(testdata, target_is_directory=True)
    demo_model_dir().parent.mkdir(parents=True, exist_ok=True)
    demo_model_dir().symlink_to(real_demo, target_is_directory=True)
    return folder


def launch_browser(pw):
    require_chromium()
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)


def wait_for_app(page) -> None:
    """Content arrives over the websocket after the HTML: wait for a heading and an idle script.

    After a click or a key press the rerun may not have started yet (sliders debounce, the
    websocket is asynchronous), so an idle page then proves nothing: wait for the content the
    interaction brings (`expect(...)`) before reading it."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=CONTENT_TIMEOUT_MS)
    # The status widget shows only after a delay: a quick page can look idle mid-run without this.
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=CONTENT_TIMEOUT_MS
    )
    page.wait_for_selector(
        '[data-testid="stStatusWidget"]', state="detached", timeout=CONTENT_TIMEOUT_MS
    )
    page.wait_for_selector('[data-testid="stSkeleton"]', state="detached", timeout=30_000)
    assert page.get_by_text("Page not found").count() == 0


def error_boxes(page) -> list[str]:
    """The text of every exception and error box the page shows now."""
    return [text.strip() for text in page.locator(ERROR_BOXES).all_inner_texts()]


def assert_no_unexpected_errors(page, expected: Iterable[str] = ()) -> None:
    """Fail on an exception or error box that contains none of the `expected` texts: a page that
    shows nothing but an error has not rendered."""
    allowed = tuple(expected)
    unexpected = [text for text in error_boxes(page) if not any(e in text for e in allowed)]
    assert not unexpected, f"error boxes on {page.url}: {unexpected}"
