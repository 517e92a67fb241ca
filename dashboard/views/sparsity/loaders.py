"""The sparsity view's cached loaders: diffs, run series, run comparisons, shells, precision."""

from __future__ import annotations

import streamlit as st

from dashboard.stamps import path_stamp
from engine.errors import SubnetScopeError
from engine.sparsity import (
    CompareResult,
    DiffConfig,
    DiffResult,
    SeriesResult,
    boundaries_from_config,
    compare_runs,
    diff,
    no_hub_downloads,
    open_source,
    pair_precision,
    series,
)


# cache keys -------------------------------------------------------------------------------
# The diffs read weights by the stamps (path_stamp) of every input, and never download a hub id:
# that takes the sidebar's button (download_button).
@st.cache_data(max_entries=16, show_spinner="Diffing base against tuned…")
def diffed(base: str, tuned: str, stamps: tuple, config: DiffConfig) -> DiffResult:
    with no_hub_downloads():
        return diff(base, tuned, config)


@st.cache_data(max_entries=8, show_spinner="Diffing every checkpoint of the run…")
def series_of(base: str, run_dir: str, stamps: tuple, config: DiffConfig) -> SeriesResult:
    with no_hub_downloads():
        return series(base, run_dir, config)


@st.cache_data(max_entries=8, show_spinner="Diffing both runs…")
def compared(
    runs: tuple[str, ...], stamps: tuple, config: DiffConfig, criterion: str, basis: str
) -> CompareResult:
    with no_hub_downloads():
        return compare_runs(list(runs), config, criterion=criterion, basis=basis)


@st.cache_data(max_entries=16, show_spinner=False)
def config_shells(base: str, stamp: str) -> list[int]:
    """Shell boundaries from the base's config when it lists nested FFN widths (Gemma-3n)."""
    try:
        with no_hub_downloads():
            folder = open_source(base).config_dir
        points = boundaries_from_config(folder) if folder else []
    except SubnetScopeError:
        return []
    return points if len(points) > 2 else []  # one width: a single shell, nothing to compare


@st.cache_data(max_entries=32, show_spinner=False)
def stored_precision(base: str, tuned: str, stamps: tuple) -> str | None:
    """`pair_precision`, cached per pair and their files' stamps."""
    return pair_precision(base, tuned)


def diff_of(base: str, tuned: str, config: DiffConfig) -> DiffResult:
    """`tuned` against `base`, computed again when the weights at either path change."""
    return diffed(base, tuned, (path_stamp(base), path_stamp(tuned)), config)
