"""What each view has computed for one neuron space: templates, SparC3 runs, diffs, adapters,
activation statistics; and the finished training runs that have no diff yet.

An artifact joins a space when the model it was computed on has that layout (see space.py), so the
planted-trigger copy's SparC3 run, the base's ICA templates and a run's checkpoints all meet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SubnetScopeError
from engine.neurons.space import NeuronSpace, try_space_of

TRAIN_KINDS = {
    "train.sft": "SFT",
    "train.grpo": "GRPO (RL)",
    "train.ppo": "PPO (RL)",
    "train.sft_masked": "masked SFT",
}
_JOB_FOLDER = re.compile(r"^\d{8}-\d{6}-[a-z0-9_.-]+-[0-9a-f]{6}$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class TemplatesRef:
    label: str
    path: Path
    job_id: str | None
    model: str
    is_demo: bool


@dataclass(frozen=True)
class PruningRef:
    label: str
    path: Path  # the SparC3 result folder
    job_id: str
    model: str
    is_demo: bool


@dataclass(frozen=True)
class DiffRef:
    label: str
    key: str  # the artifact key of the cached diff
    path: Path
    base: str
    tuned: str
    criterion: str
    run_job: str | None  # the training job whose checkpoint is the tuned side
    run_kind: str | None
    step: int | None
    final: bool  # the run's last checkpoint (or a diff outside any run)
    model: str


@dataclass(frozen=True)
class AdapterRef:
    name: str
    path: Path
    model: str
    is_demo: bool


@dataclass(frozen=True)
class RunRef:
    """A finished training run with checkpoints."""

    job_id: str
    kind: str
    model: str
    result: Path


def _fits(space: NeuronSpace, model: str | None) -> bool:
    other = try_space_of(model)
    return other is not None and other == space


def templates(space: NeuronSpace) -> list[TemplatesRef]:
    """ICA templates of this layout in the intermediate-neuron space; templates over MLP output
    channels (mlp_out, seed 001's reference) index another space and are left out."""
    from engine.ica.catalog import list_templates
    from engine.ica.templates import load_templates

    found = []
    for entry in list_templates():
        try:
            loaded = load_templates(entry.path)
        except SubnetScopeError:
            continue
        meta = loaded.metadata
        # mlp_out templates number hidden-size MLP output channels, not this space's neurons.
        if loaded.space != "mlp_neurons":
            continue
        if space.fits(meta.get("neurons_per_layer") or (), meta.get("family")):
            found.append(
                TemplatesRef(
                    entry.label, entry.path, entry.job_id, str(meta.get("model", "")), entry.is_demo
                )
            )
    return found


def pruning_runs(space: NeuronSpace) -> list[PruningRef]:
    from engine.attribution.results import list_runs

    return [
        PruningRef(entry.label, entry.path, entry.job_id, entry.model, entry.is_demo)
        for entry in list_runs()
        if _fits(space, entry.model)
    ]


def adapters(space: NeuronSpace) -> list[AdapterRef]:
    from engine.lora.catalog import list_adapters

    found = []
    for entry in list_adapters():
        if entry.ready and entry.path is not None and _fits(space, entry.source):
            found.append(AdapterRef(entry.name, entry.path, entry.source, entry.is_demo))
    return found


def training_runs(space: NeuronSpace) -> list[RunRef]:
    from engine.jobs import list_jobs
    from engine.jobs.files import RESULT

    found = []
    for kind in TRAIN_KINDS:
        for view in list_jobs(kind=kind, states=("succeeded",), limit=100):
            result = view.path / RESULT
            model = str(view.spec.params.get("model", ""))
            if any(result.glob("checkpoint-*")) and _fits(space, model):
                found.append(RunRef(view.id, kind, model, result))
    return found


def _owning_job(path: str) -> tuple[str | None, int | None]:
    """The job folder and checkpoint step a weights path sits in, if it sits in one."""
    parts = Path(path).parts
    job = next((p for p in parts if _JOB_FOLDER.match(p)), None)
    step = next((int(m[1]) for p in parts if (m := _CHECKPOINT.match(p))), None)
    return job, step


def _input_path(spec: dict) -> str:
    files = spec.get("files") or []
    if files:
        return str(Path(files[0]["path"]).parent)
    return str(spec.get("path") or spec.get("id") or spec.get("type", "?"))


def diffs(space: NeuronSpace) -> list[DiffRef]:
    """Cached diffs of models in this space, newest first, one per (base, tuned, criterion)."""
    from engine.cache import ArtifactStore
    from engine.jobs import get_job
    from engine.sparsity import ARTIFACT_KIND

    found, seen, last_step = [], set(), {}
    for entry in ArtifactStore().list(ARTIFACT_KIND):
        try:
            summary = json.loads((entry.path / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        inputs = entry.manifest.get("inputs", {})
        base, tuned = _input_path(inputs.get("base", {})), _input_path(inputs.get("tuned", {}))
        criterion = str(summary.get("mask_criterion", ""))
        if (base, tuned, criterion) in seen:  # neuron counts are kept with or without masks
            continue
        job_id, step = _owning_job(tuned)
        kind, model = None, ""
        if job_id is not None:
            try:
                view = get_job(job_id)
                kind, model = view.spec.kind, str(view.spec.params.get("model", ""))
            except SubnetScopeError:
                job_id = None
        if model:
            if not _fits(space, model):
                continue
        else:  # a diff of two folders: its recorded layout decides
            layout = summary.get("layout", {})
            if layout.get("num_layers") != space.num_layers or (
                str(layout.get("family", "")).lower() != space.family.lower()
            ):
                continue
        seen.add((base, tuned, criterion))
        final = True
        if job_id is not None and step is not None:
            if job_id not in last_step:
                steps = [
                    int(m[1])
                    for p in Path(tuned).parent.iterdir()
                    if (m := _CHECKPOINT.match(p.name))
                ]
                last_step[job_id] = max(steps, default=step)
            final = step == last_step[job_id]
        if job_id is not None:
            what = TRAIN_KINDS.get(kind or "", kind or "run")
            label = f"{what} run {job_id[-6:]} · step {step}"
        else:
            label = f"{Path(tuned).name} vs {Path(base).name}"
        found.append(
            DiffRef(
                label=f"{label} · τ {criterion}",
                key=entry.key,
                path=entry.path,
                base=base,
                tuned=tuned,
                criterion=criterion,
                run_job=job_id,
                run_kind=kind,
                step=step,
                final=final,
                model=model,
            )
        )
    return found


def activation_runs(space: NeuronSpace) -> list:
    from engine.neurons.activations import list_activation_runs

    return [run for run in list_activation_runs() if _fits(space, run.model)]
