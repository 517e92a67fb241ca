"""The converter-made TFLite samples (engine/tflite/converted), for tests: built once by
scripts/build_converted_samples.sh into the cache keyed by the converter's version; a test that
needs one skips where it is missing (fails in CI, which builds them)."""

from __future__ import annotations

from engine.tflite.converted.build import ConvertedSample, built_samples
from engine.tflite.converted.specs import SAMPLES
from tests.optional import need

NAMES = tuple(spec.name for spec in SAMPLES)


def converted(name: str) -> ConvertedSample:
    """The built sample `name` (the test skips, or fails in CI, when it is not built)."""
    found = built_samples([name])
    need(
        "converted-samples",
        bool(found),
        f"the converter sample '{name}' is not built (scripts/build_converted_samples.sh)",
    )
    return found[0]
