"""Where trained generators and teachers are: finished jobs, the demo's first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.jobs.finished import FinishedResult, finished_results
from engine.lora.generator.config import (
    DEMO_GENERATOR,
    DEMO_TEACHERS,
    GENERATOR_KIND,
    TEACHERS_KIND,
)

GENERATOR_META = "generator/meta.json"
TEACHERS_MANIFEST = "checkpoints/manifest.json"


def list_generators(limit: int = 100) -> list[FinishedResult]:
    """Succeeded generator jobs holding a generator: the demo's first, then newest first."""
    return finished_results(GENERATOR_KIND, GENERATOR_META, DEMO_GENERATOR, limit=limit)


def demo_generator() -> FinishedResult | None:
    return next((r for r in list_generators() if r.is_demo), None)


def list_teacher_runs(limit: int = 100) -> list[FinishedResult]:
    return finished_results(TEACHERS_KIND, TEACHERS_MANIFEST, DEMO_TEACHERS, limit=limit)


@dataclass(frozen=True)
class TeacherAdapter:
    """One task's teacher (its last checkpoint) as the blender lists it."""

    name: str  # teacher-<task> (the demo's) or teacher-<task>-<job token>
    task: str
    path: Path
    job_id: str
    source: str
    is_demo: bool


def teacher_adapters(limit: int = 20) -> list[TeacherAdapter]:
    """The last checkpoint of every task of every finished teachers run."""
    import json

    found, named_demo = [], False
    for result in list_teacher_runs(limit=limit):
        folder = result.path / "checkpoints"
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        last: dict[str, dict] = {}
        for entry in manifest.get("adapters", []):
            if entry["step"] >= last.get(entry["task"], {}).get("step", -1):
                last[entry["task"]] = entry
        demo = result.is_demo and not named_demo  # the newest demo run keeps the short names
        named_demo = named_demo or demo
        token = "" if demo else "-" + result.view.id.rsplit("-", 1)[-1]
        for task, entry in last.items():
            found.append(
                TeacherAdapter(
                    name=f"teacher-{task}{token}",
                    task=task,
                    path=folder / entry["path"],
                    job_id=result.view.id,
                    source=str(manifest.get("model", "")),
                    is_demo=demo,
                )
            )
    return found
