"""The LoRA view's cached loaders: adapter sets, blends, generations, geometry, norms, deltas, and
the LoRA generator's runs, adapters and their deltas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from dashboard.loaders import shared_model
from engine.errors import SubnetScopeError
from engine.lora import AdapterSet, BlendResult, BlendSpec, blend, load_adapter_set

if TYPE_CHECKING:
    import numpy as np

    from engine.lora import GeneratedAdapter, GeneratorRun


@dataclass(frozen=True)
class Picked:
    """The chosen adapter folders, as a hashable cache key (paths, names, modification times)."""

    paths: tuple[str, ...]
    names: tuple[str, ...] | None  # None: named after their folders
    mtimes: tuple[int, ...]

    @classmethod
    def of(cls, paths: list[str], names: list[str] | None = None) -> Picked:
        resolved = [Path(p).expanduser() for p in paths]
        for path in resolved:
            if not (path / "adapter_config.json").is_file():
                raise SubnetScopeError(
                    f"'{path}' is not a PEFT adapter folder (no adapter_config.json)"
                )
        mtimes = tuple(
            max(f.stat().st_mtime_ns for f in path.iterdir() if f.is_file()) for path in resolved
        )
        return cls(tuple(str(p) for p in resolved), tuple(names) if names else None, mtimes)


# adapters ---------------------------------------------------------------------------------
@st.cache_data(max_entries=4, show_spinner=False)
def adapter_choices(stamp: str) -> list[tuple[str, str, bool]]:
    """(path, name, preselect) of every ready adapter: the demo's first, then runs, then saved.
    `stamp` (the workspace stamp) brings in a run as it finishes and a blend as it is saved."""
    from engine.lora import list_adapters

    ready = [e for e in list_adapters() if e.ready and e.path is not None]
    # Preselect the demo's task adapters, else every trained one; saved blends wait to be picked.
    first = [e for e in ready if e.is_demo] or [e for e in ready if e.job_id]
    return [(str(e.path), e.name, e in first) for e in ready]


@st.cache_resource(max_entries=4, show_spinner="Reading the adapters…")
def _adapter_set(picked: Picked) -> AdapterSet:
    return load_adapter_set(list(picked.paths), names=picked.names)


def opened(paths: list[str], names: list[str] | None) -> tuple[Picked, AdapterSet]:
    picked = Picked.of(paths, names)
    return picked, _adapter_set(picked)


@st.cache_resource(max_entries=16, show_spinner=False)
def blended(picked: Picked, spec: BlendSpec) -> BlendResult:
    return blend(_adapter_set(picked), spec)


# generations ------------------------------------------------------------------------------
@st.cache_data(max_entries=64, show_spinner=False)
def generation_column(
    source: str,
    dtype: str,
    picked: Picked,
    variant: str,
    spec: BlendSpec | None,
    prompts: tuple[str, ...],
    max_new_tokens: int,
) -> list[str]:
    """One variant's completions: 'base', an adapter's name (alone, at weight 1), or 'blend'."""
    from engine.lora import side_by_side

    adapters = _adapter_set(picked)
    factors = None
    if variant == "blend":
        factors = blended(picked, spec).factors
    elif variant != "base":
        factors = adapters.adapters[adapters.names.index(variant)].factors
    table = side_by_side(
        shared_model(source, dtype), prompts, {variant: factors}, max_new_tokens=max_new_tokens
    )
    return table[variant].tolist()


# geometry ---------------------------------------------------------------------------------
@st.cache_data(max_entries=16, show_spinner="Measuring the updates…")
def geometry_tables(
    picked: Picked, spec: BlendSpec
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from engine.lora import cosine_matrix, cosine_table, geometry_table

    adapters = _adapter_set(picked)
    geometry = geometry_table(adapters, blended(picked, spec))
    return geometry, cosine_matrix(adapters), cosine_table(adapters)


@st.cache_data(max_entries=32, show_spinner="Measuring each neuron's update…")
def neuron_norms_table(picked: Picked, spec: BlendSpec, name: str, source: str) -> pd.DataFrame:
    from engine.lora import factor_neuron_norms
    from engine.neurons import architecture_of  # from the config alone: no weights

    adapters = _adapter_set(picked)
    if name in adapters.names:
        factors = adapters.adapters[adapters.names.index(name)].factors
    else:
        factors = blended(picked, spec).factors
    return factor_neuron_norms(factors, architecture_of(source), name)


# delta activations ------------------------------------------------------------------------
@st.cache_resource(max_entries=16, show_spinner="Running the probes…")
def delta_table(source: str, dtype: str, picked: Picked, spec: BlendSpec, probes: str):
    from engine.lora import delta_activations

    return delta_activations(
        shared_model(source, dtype),
        _adapter_set(picked),
        probes,
        blends={"blend": blended(picked, spec).factors},
    )


# the generator ----------------------------------------------------------------------------
# Files of a generator's result folder (engine/lora/generator/runs.py).
SUMMARY, EVALUATION, HISTORY = "generator.json", "evaluation.parquet", "history.parquet"
ABLATION_SUMMARY = "ablation.json"
SPLITS = {"held_out": "held-out task", "seen": "seen tasks, unseen prompts"}
VARIANTS = ("base", "teacher", "teachers' mean", "generated")


@st.cache_data(max_entries=4, show_spinner=False)
def generator_choices(stamp: str) -> list[tuple[str, str, str]]:
    """(job id, result folder, label) of every trained generator, the demo's first. `stamp`
    (the workspace stamp) brings in one as its job finishes."""
    import json

    from engine.lora import GENERATOR_META, list_generators

    found = []
    for result in list_generators():
        try:
            meta = json.loads((result.path / GENERATOR_META).read_text())
            held = ", ".join(meta["held_out"]) or "none"
            label = (
                f"{'demo · ' if result.is_demo else ''}{meta['loss']} · {meta['arch']} · "
                f"{meta['encoder']} encoder · held out: {held} · {result.view.id}"
            )
        except (OSError, ValueError, KeyError):
            continue  # unreadable: not listed
        found.append((result.view.id, str(result.path), label))
    return found


def meta_mtime(result: str) -> int:
    """The generator's meta.json modification time: part of every key of its caches."""
    from engine.lora import GENERATOR_META

    return (Path(result) / GENERATOR_META).stat().st_mtime_ns


@st.cache_data(max_entries=8, show_spinner=False)
def generator_report(result: str, mtime: int) -> dict:
    """A generator's meta, its evaluation per split (a table of variants) and loss history."""
    import json

    from engine.lora import GENERATOR_META

    folder = Path(result)
    meta = json.loads((folder / GENERATOR_META).read_text())
    summary = json.loads((folder / SUMMARY).read_text()) if (folder / SUMMARY).is_file() else {}
    splits = {}
    for key, title in SPLITS.items():
        part = summary.get("evaluation", {}).get(key)
        if not part:
            continue
        rows = [
            {
                "variant": v,
                "held-out loss": part[v].get("loss"),
                "recovery": part[v].get("recovery"),
                "δ cos to teacher": part[v].get("delta_cos"),
            }
            for v in VARIANTS
            if v in part
        ]
        splits[title] = (list(part.get("tasks", [])), pd.DataFrame(rows))
    history = folder / HISTORY
    evaluation = folder / EVALUATION
    return {
        "meta": meta,
        "seconds": summary.get("seconds"),
        "splits": splits,
        "history": pd.read_parquet(history) if history.is_file() else pd.DataFrame(),
        "evaluation": pd.read_parquet(evaluation) if evaluation.is_file() else pd.DataFrame(),
    }


@st.cache_data(max_entries=4, show_spinner=False)
def teachers_info(folder: str, mtime: int) -> dict:
    """What the view needs of a teachers run: tasks, held-out prompts, teachers, probes."""
    from engine.lora import open_teachers

    run = open_teachers(folder)
    return {
        "template": str(run.manifest.get("template", "auto")),
        "probes": run.probes,
        "probe_max_length": int(run.manifest.get("probe_max_length", 256)),
        "prompts": {t: list(info["heldout_prompts"]) for t, info in run.tasks.items()},
        "finals": {t: str(run.final(t).path) for t in run.tasks},
    }


def manifest_mtime(folder: str) -> int:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise SubnetScopeError(
            f"the generator's teachers are gone ({path} is missing): its evaluation is shown, "
            "but generating needs them"
        )
    return path.stat().st_mtime_ns


@st.cache_data(max_entries=4, show_spinner=False)
def ablation_for(teachers: str, stamp: str) -> tuple[str, dict] | None:
    """The newest finished ablation on the same teachers run: (job id, its ablation.json)."""
    import json

    from engine.jobs import RESULT, list_jobs
    from engine.lora import ABLATION_KIND, open_teachers

    for view in list_jobs(kind=ABLATION_KIND, states=("succeeded",)):
        path = view.path / RESULT / ABLATION_SUMMARY
        if not path.is_file():
            continue
        try:
            folder = open_teachers(str(view.spec.params.get("teachers", "demo"))).folder
            if folder.resolve() == Path(teachers).resolve():
                return view.id, json.loads(path.read_text())
        except (SubnetScopeError, OSError, ValueError):
            continue
    return None


@st.cache_resource(max_entries=2, show_spinner="Loading the generator…")
def generator_run(job_id: str, mtime: int) -> GeneratorRun:
    from engine.lora import open_generator

    return open_generator(job_id)


@st.cache_resource(max_entries=2, show_spinner="Loading the prompt encoder…")
def sentence_encoder(job_id: str, mtime: int):
    """The generator's own prompt encoder where it is not the base model (which is shared)."""
    from engine.lora import encoder_for

    return encoder_for(generator_run(job_id, mtime), None)


@st.cache_resource(max_entries=8, show_spinner="Generating the adapter…")
def generated_adapter(job_id: str, mtime: int, prompts: str, dtype: str) -> GeneratedAdapter:
    """One forward pass of the generator over the prompts (one per line); read-only."""
    from engine.lora import generate_adapter

    run = generator_run(job_id, mtime)
    loaded = shared_model(run.model, dtype)
    encoder = None if run.meta["encoder"] == "base" else sentence_encoder(job_id, mtime)
    return generate_adapter(run, prompts.splitlines(), loaded, encoder=encoder)


@st.cache_data(max_entries=8, show_spinner=False)
def generated_norms(
    job_id: str, mtime: int, prompts: str, dtype: str, teacher: str, teacher_name: str
) -> pd.DataFrame:
    """‖ΔW‖_F per layer of the generated adapter and of a teacher (exact from the factors)."""
    from engine.lora import frobenius, load_adapter, module_layer, norms_by_layer

    updates = {
        "generated": generated_adapter(job_id, mtime, prompts, dtype).factors,
        teacher_name: load_adapter(teacher).factors,
    }
    rows = [
        {"adapter": name, "module": m, "layer": module_layer(m), "norm": frobenius(f)}
        for name, factors in updates.items()
        for m, f in factors.items()
    ]
    return norms_by_layer(pd.DataFrame(rows))


@st.cache_data(max_entries=4, show_spinner="Running the teachers over their probes…")
def teacher_deltas(
    model: str, dtype: str, teachers: str, mtime: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Δ = v(teacher) − v(base) of every task's last checkpoint over the teachers' probes, on
    the shared model: (tasks, Δ (n, hidden), v(base) (hidden,))."""
    import numpy as np

    from engine.lora import load_adapter, mean_last_state

    info = teachers_info(teachers, mtime)
    loaded = shared_model(model, dtype)
    probes, length = info["probes"], info["probe_max_length"]
    base = mean_last_state(loaded, probes, max_length=length)
    rows = [
        mean_last_state(loaded, probes, load_adapter(path).factors, max_length=length) - base
        for path in info["finals"].values()
    ]
    return list(info["finals"]), np.stack([r.numpy() for r in rows]), base.numpy()


@st.cache_data(max_entries=8, show_spinner="Running the generated adapter over the probes…")
def generated_delta(
    job_id: str, mtime: int, prompts: str, dtype: str, teachers: str, t_mtime: int
) -> np.ndarray:
    """Δ of the generated adapter over the teachers' probes, (hidden,)."""
    from engine.lora import mean_last_state

    run = generator_run(job_id, mtime)
    info = teachers_info(teachers, t_mtime)
    _, _, base = teacher_deltas(run.model, dtype, teachers, t_mtime)
    factors = generated_adapter(job_id, mtime, prompts, dtype).factors
    loaded = shared_model(run.model, dtype)
    state = mean_last_state(loaded, info["probes"], factors, max_length=info["probe_max_length"])
    return state.numpy() - base


@st.cache_data(max_entries=16, show_spinner="Generating text…")
def generator_generations(
    job_id: str,
    mtime: int,
    prompts: str,
    dtype: str,
    teacher: str,
    teacher_name: str,
    template: str | None,
    max_new_tokens: int,
) -> pd.DataFrame:
    """Greedy continuations of the base, a teacher and the generated adapter on the prompts,
    each wrapped in the teachers' prompt template unless `template` is None."""
    from engine.data import Example, format_prompt
    from engine.lora import load_adapter, side_by_side

    adapter = generated_adapter(job_id, mtime, prompts, dtype)
    loaded = shared_model(adapter.run.model, dtype)
    texts = adapter.prompts
    if template is not None:
        texts = [
            format_prompt(Example(instruction=p, response=""), template, loaded.tokenizer)
            for p in texts
        ]
    variants = {
        "base": None,
        teacher_name: load_adapter(teacher).factors,
        "generated": adapter.factors,
    }
    table = side_by_side(loaded, texts, variants, max_new_tokens=max_new_tokens)
    table["prompt"] = adapter.prompts
    return table
