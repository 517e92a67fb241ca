"""Job kinds of the TFLite area."""

from __future__ import annotations

from typing import Any

from engine.jobs import JobContext, job


@job(
    "tflite.convert_samples",
    title="Convert the TFLite samples with Google's converter",
    result_page="tflite",
    defaults={"names": None, "force": False},
    mem_gb=4.0,
)
def convert_samples(params: dict[str, Any], ctx: JobContext) -> dict:
    """Convert the demo model and the tiny Gemma 3 / Gemma 3n / Qwen2 configs with litert-torch
    (engine/tflite/converted/specs.py); samples already built for this converter are kept."""
    from engine.tflite.converted.build import build_samples

    names, force = params.get("names"), bool(params.get("force"))
    built = build_samples(names, force=force, progress=ctx.progress)
    return {
        "samples": [
            {"name": s.spec.name, "folder": str(s.folder), "seconds": s.manifest["seconds"]}
            for s in built
        ]
    }
