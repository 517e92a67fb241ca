"""The passport view's cached loaders: a model's neuron space, passports, neuron sets, overlaps."""

from __future__ import annotations

import streamlit as st

from dashboard.stamps import path_stamp
from engine.neurons import (
    NeuronSet,
    NeuronSpace,
    Passport,
    known_sets,
    overlap_matrix,
    passport,
    space_of,
)


@st.cache_data(max_entries=8, show_spinner="Reading the model's config…")
def cached_space(source: str, weights: str) -> NeuronSpace:
    """`weights`: the folder's stamp (a model saved again under the same path is read again)."""
    return space_of(source)


@st.cache_data(max_entries=64, show_spinner="Gathering what every view has computed…")
def cached_passport(source: str, layer: int, neuron: int, stamp: str) -> Passport:
    """`stamp`: the workspace stamp, so a finished job's artifacts join the passport at once."""
    return passport(source, layer, neuron)


# --- overlaps -------------------------------------------------------------------------------------
@st.cache_data(max_entries=8, show_spinner="Collecting the neuron sets of every view…")
def cached_sets(source: str, top: int, stamp: str) -> list[NeuronSet]:
    return known_sets(neuron_space(source), top)


def set_contents(sets: list[NeuronSet]) -> tuple:
    """What the matrix reads of each set, as a hashable key: name, neurons and layers."""
    return tuple((s.spec, tuple(sorted(s.neurons)), s.layers) for s in sets)


@st.cache_data(max_entries=16, show_spinner="Testing every pair of sets…")
def cached_matrix(contents: tuple, _sets: list[NeuronSet], widths: tuple[int, ...]):
    """`contents` (set_contents of `_sets`) is the key: an edited list of your own, or a set a
    finished job changed, is a new matrix."""
    return overlap_matrix(_sets, widths)


def neuron_space(source: str) -> NeuronSpace:
    return cached_space(source, path_stamp(source))
