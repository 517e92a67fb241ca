"""A teachers run as the generator reads it: tasks, checkpoints, prompts, probes and cached deltas.

The folder is the one `train.lora_teachers` writes (seed 004's layout):
`checkpoints/{task}/{task}_{idx}/adapter_model.safetensors` + `prompts.json`,
`checkpoints/manifest.json` and `checkpoints/deltas/` (a DeltaCache).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import SubnetScopeError
from engine.lora.generator.config import TEACHERS_KIND

if TYPE_CHECKING:
    import torch

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
FORMAT = "subnetscope-lora-teachers/1"


@dataclass(frozen=True)
class TeacherCheckpoint:
    id: str  # "add_007"
    task: str
    idx: int
    step: int
    path: Path  # the PEFT folder
    heldout_loss: float | None


@dataclass
class TeacherRun:
    folder: Path  # .../result/checkpoints
    manifest: dict[str, Any]
    checkpoints: list[TeacherCheckpoint]
    job_id: str | None = None
    _deltas: Any = field(default=None, repr=False)

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.manifest["tasks"]

    @property
    def probes(self) -> list[str]:
        return list(self.manifest["probes"])

    @property
    def rank(self) -> int:
        return int(self.manifest["rank"])

    @property
    def alpha(self) -> float:
        return float(self.manifest["alpha"])

    @property
    def max_length(self) -> int:
        return int(self.manifest.get("max_length", 64))

    @property
    def probe_max_length(self) -> int:
        """The token limit the teachers' cached v(·) used; recomputed states must use it too."""
        return int(self.manifest.get("probe_max_length", 256))

    def of_task(self, task: str) -> list[TeacherCheckpoint]:
        return [c for c in self.checkpoints if c.task == task]

    def final(self, task: str) -> TeacherCheckpoint:
        """The task's last checkpoint: its teacher."""
        mine = self.of_task(task)
        if not mine:
            raise SubnetScopeError(f"the teachers run has no checkpoint of task '{task}'")
        return max(mine, key=lambda c: c.step)

    def check_tasks(self, names: tuple[str, ...]) -> None:
        unknown = [n for n in names if n not in self.tasks]
        if unknown:
            raise SubnetScopeError(
                f"task{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} not in the teachers "
                f"run; it has {', '.join(self.tasks)}"
            )

    def heldout_pairs(self, task: str) -> list[tuple[str, str]]:
        """(formatted prompt, response) of the task's held-out examples."""
        info = self.tasks[task]
        pairs = info.get("heldout_pairs")
        if not pairs:
            raise SubnetScopeError(
                f"the teachers run has no held-out prompt/response pairs for '{task}' (written "
                "by an older version): run the teachers again"
            )
        return [(str(p), str(r)) for p, r in pairs]

    def delta_cache(self):
        if self._deltas is None:
            from engine.lora.delta_cache import DeltaCache

            self._deltas = DeltaCache(self.folder / "deltas")
        return self._deltas

    def base_state(self) -> np.ndarray:
        base = self.delta_cache().base()
        if base is None:
            raise SubnetScopeError(f"the teachers run at {self.folder} has no cached base state")
        return base

    def delta(self, checkpoint_id: str) -> np.ndarray:
        delta = self.delta_cache().get(checkpoint_id)
        if delta is None:
            raise SubnetScopeError(f"the teachers run has no cached delta for '{checkpoint_id}'")
        return delta


def teacher_factors(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (A (r, d_in), B (d_out, r))} of one PEFT checkpoint, float32."""
    from engine.lora.adapters import load_adapter

    adapter = load_adapter(path)
    return {m: (f.a.float(), f.b.float()) for m, f in adapter.factors.items()}


def _read(folder: Path, job_id: str | None) -> TeacherRun:
    path = folder / MANIFEST
    if not path.is_file():
        raise SubnetScopeError(f"{folder} holds no teachers manifest ({MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise SubnetScopeError(f"{path} is not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise SubnetScopeError(f"{path} is not a teachers manifest (format {FORMAT})")
    checkpoints = [
        TeacherCheckpoint(
            id=str(a["id"]),
            task=str(a["task"]),
            idx=int(a["idx"]),
            step=int(a["step"]),
            path=folder / a["path"],
            heldout_loss=a.get("heldout_loss"),
        )
        for a in manifest.get("adapters", [])
    ]
    if not checkpoints:
        raise SubnetScopeError(f"the teachers run at {folder} lists no checkpoints")
    return TeacherRun(folder, manifest, checkpoints, job_id)


def demo_teachers_job():
    """The newest succeeded job of the demo's teachers part, or None."""
    from engine.jobs import list_jobs
    from engine.lora.generator.config import DEMO_TEACHERS

    for view in list_jobs(kind=TEACHERS_KIND, limit=200):
        params = view.spec.params
        if view.status.state == "succeeded" and all(
            params.get(k) == v for k, v in DEMO_TEACHERS.items()
        ):
            return view
    return None


def open_teachers(spec: str) -> TeacherRun:
    """A teachers run from a job id, a job or result folder, or 'demo'."""
    from engine.jobs import get_job
    from engine.jobs.files import RESULT

    spec = str(spec).strip()
    if spec == "demo":
        view = demo_teachers_job()
        if view is None:
            raise SubnetScopeError(
                "the demo's teacher adapters are not built yet: run `python -m engine demo build` "
                "(the lora-teachers part)"
            )
        return _read(view.path / RESULT / CHECKPOINTS, view.id)
    path = Path(spec).expanduser()
    if path.is_dir():
        for folder in (path, path / CHECKPOINTS, path / RESULT / CHECKPOINTS):
            if (folder / MANIFEST).is_file():
                return _read(folder, None)
        raise SubnetScopeError(f"{path} holds no teachers run (no {CHECKPOINTS}/{MANIFEST})")
    try:
        view = get_job(spec)
    except SubnetScopeError:
        raise SubnetScopeError(
            f"'{spec}' is neither a teachers job id nor a folder holding {CHECKPOINTS}/{MANIFEST}"
        ) from None
    if view.spec.kind != TEACHERS_KIND:
        raise SubnetScopeError(f"job {spec} is a {view.spec.kind} job, not {TEACHERS_KIND}")
    if view.status.state != "succeeded":
        raise SubnetScopeError(f"teachers job {spec} has not succeeded ({view.status.state})")
    return _read(view.path / RESULT / CHECKPOINTS, view.id)
