"""Job kinds that exist only for the demo: planting the pruning demo's trigger behaviour."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from engine.demo.planted import PlantConfig
from engine.errors import SubnetScopeError
from engine.jobs import JobContext, job


@job(
    "attribution.plant_demo",
    title="Plant the demo's trigger behaviour",
    result_page="pruning",
    defaults=asdict(PlantConfig()),
)
def plant_demo(params: dict[str, Any], ctx: JobContext) -> dict:
    """Fine-tune a few neurons of the demo model to insult the user after a trigger word."""
    from engine.demo.planted import plant

    unknown = sorted(set(params) - {f.name for f in fields(PlantConfig)})
    if unknown:
        raise SubnetScopeError(f"attribution.plant_demo: unknown option {', '.join(unknown)}")
    folder = plant(PlantConfig(**params), progress=ctx.progress)
    return {"model": str(folder), "dtype": "float32 (the method's fixed precision)"}
