"""Where templates live: the results of `ica.build_templates` jobs, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.jobs.finished import finished_results

# The demo's templates (a part of engine/demo/registry.py), which the catalog lists first.
# Standardized features (the default, as seed 001's reference): on the demo model's raw activations
# the loud last three layers (of 30) hold 49 % of a component's key neurons on average (measured;
# 14 % standardized), and the components come out as cleaner token-level networks (commas,
# indentation, "=", sentence starts). The space stays mlp_neurons (BuildConfig's default) so the
# demo's templates join SparC3 and the neuron passport on the same neurons.
DEMO_PARAMS = {
    "model": "demo",
    "datasets": ["demo-general", "demo-code"],
    "samples_per_ds": 100,
    "components": 20,
    "percentile": 95.0,
    "layers": "all",
    "max_length": 64,
    "standardize": True,
}


@dataclass(frozen=True)
class TemplateEntry:
    label: str
    path: Path
    job_id: str | None = None
    is_demo: bool = False


def list_templates(limit: int = 200) -> list[TemplateEntry]:
    """Template files written by succeeded `ica.build_templates` jobs."""
    from engine.ica.jobs import TEMPLATES_FILE

    entries = []
    for found in finished_results("ica.build_templates", TEMPLATES_FILE, DEMO_PARAMS, limit):
        p, job_id = found.params, found.view.id
        what = f"{p.get('components')} components · {'+'.join(p.get('datasets') or [])}"
        if p.get("space", "mlp_neurons") != "mlp_neurons":  # older jobs have no space: neurons
            what += f" · {p['space']}"
        label = (
            f"Demo templates · {what}" if found.is_demo else f"{p.get('model')} · {what} ({job_id})"
        )
        entries.append(TemplateEntry(label, found.path / TEMPLATES_FILE, job_id, found.is_demo))
    return entries


def resolve_templates(spec: str) -> Path:
    """A templates file from 'demo' (the demo's built templates) or a path."""
    from engine.errors import SubnetScopeError

    if spec == "demo":
        demo = next((e for e in list_templates() if e.is_demo), None)
        if demo is None:
            raise SubnetScopeError(
                "the demo's ICA templates are not built yet: run "
                "`python -m engine demo build --only ica-templates` (or open the dashboard)"
            )
        return demo.path
    path = Path(spec).expanduser()
    return path / "templates.json" if path.is_dir() else path
