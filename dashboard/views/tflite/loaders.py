"""Cached TFLite readers and analyses, keyed by path + size + mtime (never by arrays).

A file that cannot be opened is cached as its one-sentence refusal under the same key, so a
crafted upload is parsed once, not again on every rerun (issue 15)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pandas as pd
import streamlit as st

from engine.tflite import (
    Finding,
    RecoveredConfig,
    TFLiteError,
    TFLiteFile,
    TFLiteReader,
    WeightMatch,
    built_samples,
    converted_source,
    digest_from_readers,
    ensure_samples,
    find_across,
    layer_table,
    list_tflite_files,
    match_weights,
    op_histogram,
    open_file,
    parameter_bytes,
    recover_config,
)


def built_converted() -> tuple[str, ...]:
    """Names of the converter-made samples that are built (reads their manifests' presence)."""
    return tuple(sample.spec.name for sample in built_samples())


def file_key(path: str) -> tuple[str, int, int]:
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise TFLiteError(f"cannot open {Path(path).name}: {exc.strerror or exc}.") from exc
    return path, stat.st_size, stat.st_mtime_ns


@st.cache_data(ttl=30, show_spinner=False)
def available_files(roots: tuple[str, ...], built: tuple[str, ...] = ()) -> list[str]:
    """TFLite files under the roots (the synthetic demo set is written on first use); `built`
    (the converter samples built) is part of the key, so a finished conversion lists at once."""
    ensure_samples()
    return [str(p) for p in list_tflite_files([Path(r) for r in roots])]


T = TypeVar("T")


def _or_refusal(outcome: T | str) -> T:
    if isinstance(outcome, str):  # the refusal of a file that failed to open: raise it again
        raise TFLiteError(outcome)
    return outcome


@st.cache_resource(max_entries=8, show_spinner="Opening the file…")
def _opened_file(key: tuple[str, int, int]) -> TFLiteFile | str:
    try:
        return open_file(key[0])
    except TFLiteError as exc:
        return str(exc)


@st.cache_resource(max_entries=8, show_spinner="Reading the graph…")
def _opened_reader(key: tuple[str, int, int], section: str | None) -> TFLiteReader | str:
    try:
        reader = opened_file(key).open(section)
    except TFLiteError as exc:
        return str(exc)
    try:
        reader.info()
    except TFLiteError as exc:
        reader.close()
        return str(exc)
    return reader


def opened_file(key: tuple[str, int, int]) -> TFLiteFile:
    """The file's sections (headers read once); raises its cached TFLiteError if it was refused."""
    return _or_refusal(_opened_file(key))


def opened_reader(key: tuple[str, int, int], section: str | None) -> TFLiteReader:
    """Shared read-only reader (an mmap); its graph is parsed once, its refusal too."""
    return _or_refusal(_opened_reader(key, section))


@st.cache_data(max_entries=16, show_spinner=False)
def histogram(key: tuple[str, int, int], section: str | None) -> pd.DataFrame:
    return op_histogram(opened_reader(key, section).info())


@st.cache_data(max_entries=16, show_spinner=False)
def params_by(key: tuple[str, int, int], section: str | None) -> pd.DataFrame:
    return parameter_bytes(opened_reader(key, section).info(), ["dtype", "quantization"])


@st.cache_data(max_entries=16, show_spinner="Looking for architecture findings…")
def findings(key: tuple[str, int, int], section: str | None) -> list[Finding]:
    """The section's findings, read with every model section of its file (as the CLI does), so
    an LM head tied by content to another section's embedding table is found (seed 000's tie
    between TF_LITE_EMBEDDER and TF_LITE_PREFILL_DECODE)."""
    chosen = opened_reader(key, section)
    readers = {chosen.info().name: chosen}
    for part in opened_file(key).models:
        reader = opened_reader(key, part.name)
        readers.setdefault(reader.info().name, reader)
    found = find_across([r.info() for r in readers.values()], digest=digest_from_readers(readers))
    return found[chosen.info().name]


@st.cache_data(max_entries=16, show_spinner="Reading the config off the graph…")
def recovered(key: tuple[str, int, int], section: str | None) -> RecoveredConfig:
    """The section's config read back from its graph (window and RoPE constants read too)."""
    reader = opened_reader(key, section)
    info = reader.info()
    digest = digest_from_readers({info.name: reader})
    return recover_config(info, digest=digest, values=reader.tensor_array)


@st.cache_data(max_entries=16, show_spinner=False)
def layers(key: tuple[str, int, int], section: str | None, subgraph: int) -> pd.DataFrame:
    return layer_table(opened_reader(key, section).info().subgraphs[subgraph])


@st.cache_data(max_entries=8, show_spinner=False)
def converted_hf_folder(path: str) -> str | None:
    """The source HF folder of a converter sample's file (None for any other file)."""
    folder = converted_source(path)
    return None if folder is None else str(folder)


@st.cache_data(max_entries=8, show_spinner="Matching the weights to their source…")
def weight_match(key: tuple[str, int, int], section: str | None, hf_folder: str) -> WeightMatch:
    """Every weight of the section matched to its HF parameter (engine.tflite.weights)."""
    return match_weights(opened_reader(key, section), hf_folder)
