"""What the TFLite tests share: the MediaPipe sample models that scripts/setup.sh fetches."""

from __future__ import annotations

from pathlib import Path

from tests.optional import need

MEDIAPIPE = Path(__file__).resolve().parents[1] / "cache" / "testdata" / "mediapipe"
# Tests parametrized over the samples get this one id when none are fetched, so that they run
# and `need_mediapipe` skips them (or fails them where the samples are required).
NOT_FETCHED = "not-fetched"


def mediapipe_models() -> list[Path]:
    """The fetched .tflite samples, sorted by name; empty when none are fetched."""
    return sorted(MEDIAPIPE.glob("*.tflite"))


def mediapipe_names() -> list[str]:
    """The samples' file names for `pytest.mark.parametrize`, or `[NOT_FETCHED]`."""
    return [p.name for p in mediapipe_models()] or [NOT_FETCHED]


def need_mediapipe() -> None:
    """Skip (or, where CI requires them, fail) when the MediaPipe samples are not fetched."""
    need("mediapipe-samples", bool(mediapipe_models()), "scripts/fetch_tflite_samples.sh not run")
