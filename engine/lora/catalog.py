"""Where adapters live: the demo's task adapters first, then other succeeded `train.lora` jobs,
then blends saved under `cache/adapters/`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.jobs import JobView, list_jobs
from engine.jobs.files import RESULT

KIND = "train.lora"
ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter_config.json"
# The LoRA blender's demo (parts of engine/demo/registry.py), which the catalog lists first: three
# task adapters on contrasting local sources (prose, Python source, arithmetic instructions), in
# this order. Adapter name -> (title, train.lora params).
DEMO_LORA_COMMON = {
    "model": "demo",
    "steps": 30,
    "batch_size": 4,
    "max_length": 64,
    "lora_rank": 8,
    "lora_alpha": 16.0,
    "lr": 5e-4,
    "rank_every": 5,
    "eval_texts": 8,
    "seed": 0,
}
DEMO_ADAPTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo-prose": (
        "LoRA adapter on prose (demo-general)",
        {**DEMO_LORA_COMMON, "dataset": "demo-general"},
    ),
    "demo-code": (
        "LoRA adapter on Python source (demo-code)",
        {**DEMO_LORA_COMMON, "dataset": "demo-code"},
    ),
    "demo-arithmetic": (
        "LoRA adapter on arithmetic instructions (demo-arithmetic)",
        {**DEMO_LORA_COMMON, "dataset": "demo-arithmetic"},
    ),
}


@dataclass(frozen=True)
class AdapterEntry:
    name: str  # demo adapters: their part name (demo-prose, ...); others: <dataset>-<job token>
    path: Path | None  # the PEFT folder; None while a demo adapter has no job yet
    job_id: str | None
    source: str  # the base model's source as the job got it ('demo', a folder, a hub id)
    dataset: str
    ready: bool  # the job succeeded and its PEFT folder is there
    is_demo: bool = False
    title: str = ""


def _adapter_path(view: JobView) -> Path:
    return view.path / RESULT / ADAPTER_DIR


def _ready(view: JobView) -> bool:
    return view.status.state == "succeeded" and (_adapter_path(view) / ADAPTER_CONFIG).is_file()


def _matches(view: JobView, params: dict) -> bool:
    return all(view.spec.params.get(k) == v for k, v in params.items())


def saved_dir() -> Path:
    """Where the blender saves blends (and where a user may drop PEFT folders of their own)."""
    from engine.paths import cache_root

    return cache_root() / "adapters"


def _saved() -> list[AdapterEntry]:
    import json

    root = saved_dir()
    folders = sorted(root.iterdir(), key=lambda p: p.name) if root.is_dir() else []
    entries = []
    for folder in folders:
        config = folder / ADAPTER_CONFIG
        if not config.is_file():
            continue
        try:
            base = json.loads(config.read_text()).get("base_model_name_or_path") or ""
        except (OSError, ValueError):
            continue  # a folder being written, or not a PEFT config: not listed
        title = f"saved · {folder}"
        generated = folder / "generated.json"
        if generated.is_file():
            try:
                count = len(json.loads(generated.read_text()).get("prompts", []))
                title = f"generated from {count} prompts · {folder}"
            except (OSError, ValueError):
                pass
        entries.append(
            AdapterEntry(
                name=folder.name,
                path=folder,
                job_id=None,
                source=str(base),
                dataset="",
                ready=True,
                title=title,
            )
        )
    return entries


def _label(dataset: str) -> str:
    path = Path(dataset)
    return path.stem if path.suffix else dataset.replace("/", "-")


def list_adapters(limit: int = 500) -> list[AdapterEntry]:
    """The demo adapters in demo order (ready or not), then other ready adapters, newest first,
    then saved ones by name."""
    jobs = list_jobs(kind=KIND, limit=limit)  # newest first
    entries, demo_jobs = [], set()
    for name, (title, params) in DEMO_ADAPTERS.items():
        mine = [j for j in jobs if _matches(j, params)]
        demo_jobs.update(j.id for j in mine)
        done = next((j for j in mine if _ready(j)), None)
        view = done or (mine[0] if mine else None)
        entries.append(
            AdapterEntry(
                name=name,
                path=_adapter_path(view) if view else None,
                job_id=view.id if view else None,
                source=str(params.get("model", "demo")),
                dataset=str(params.get("dataset", "")),
                ready=done is not None,
                is_demo=True,
                title=title,
            )
        )
    for view in jobs:
        if view.id in demo_jobs or not _ready(view):
            continue
        p = view.spec.params
        dataset = str(p.get("dataset", ""))
        token = view.id.rsplit("-", 1)[-1]
        entries.append(
            AdapterEntry(
                name=f"{_label(dataset)}-{token}",
                path=_adapter_path(view),
                job_id=view.id,
                source=str(p.get("model", "")),
                dataset=dataset,
                ready=True,
                title=f"{p.get('model')} · {dataset} · rank {p.get('lora_rank')} ({view.id})",
            )
        )
    return entries + _teachers() + _saved()


def _teachers() -> list[AdapterEntry]:
    """Each task's teacher from finished teachers runs (the LoRA generator's, seed 004)."""
    from engine.lora.generator.catalog import teacher_adapters

    return [
        AdapterEntry(
            name=t.name,
            path=t.path,
            job_id=t.job_id,
            source=t.source,
            dataset=t.task,
            ready=True,
            title=f"teacher of task '{t.task}' ({t.job_id})",
        )
        for t in teacher_adapters()
    ]


def demo_adapter_paths() -> list[Path]:
    """The PEFT folders of the demo adapters that are ready, in demo order."""
    return [e.path for e in list_adapters() if e.is_demo and e.ready and e.path is not None]


def resolve_adapters(specs: list[str]) -> tuple[list[Path], list[str]]:
    """Adapter folders and names from what a user typed: `demo` (the demo's task adapters), a
    listed adapter's name (demo-prose, a run's name, a saved blend), or a PEFT folder."""
    from engine.errors import SubnetScopeError

    entries = {e.name: e for e in list_adapters()}
    paths: list[Path] = []
    names: list[str] = []
    for spec in specs:
        if spec == "demo":
            demo = [e for e in entries.values() if e.is_demo]
            missing = [e.name for e in demo if not e.ready]
            if missing:
                raise SubnetScopeError(
                    f"the demo adapters are not built yet ({', '.join(missing)}): run "
                    "`python -m engine demo build` and wait a few minutes"
                )
            paths += [e.path for e in demo]
            names += [e.name for e in demo]
        elif spec in entries and entries[spec].ready and not Path(spec).exists():
            paths.append(entries[spec].path)
            names.append(spec)
        else:
            folder = Path(spec).expanduser()
            paths.append(folder)
            by_path = {e.path: e.name for e in entries.values() if e.path is not None}
            names.append(by_path.get(folder.resolve()) or _folder_name(folder))
    if len(set(names)) != len(names):  # two folders with one name: their paths tell them apart
        names = [str(p) for p in paths]
    return paths, names


def _folder_name(folder: Path) -> str:
    """A readable name for a typed folder: a job's adapter is named after its job."""
    parts = folder.resolve().parts
    if len(parts) >= 3 and parts[-2:] == (RESULT, ADAPTER_DIR):
        return parts[-3]
    return folder.name or str(folder)
