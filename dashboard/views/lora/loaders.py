"""The LoRA view's cached loaders: adapter sets, blends, generations, geometry, norms, deltas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.loaders import shared_model
from engine.errors import SubnetScopeError
from engine.lora import AdapterSet, BlendResult, BlendSpec, blend, load_adapter_set


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
