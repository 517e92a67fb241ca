"""The Attention view's cached loaders: texts, layout, head statistics and maps, base vs tuned, the
localized layers' perplexity and generations, and finished sweep / context jobs."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from dashboard.loaders import shared_model
from engine.errors import SubnetScopeError

if TYPE_CHECKING:
    from engine.attention import AttentionMap, HeadStats, TunedChoice
    from engine.evaluation import PerplexityResult


@dataclass(frozen=True)
class TextsConfig:
    """Which texts the head statistics read: a hashable cache key (the file's stamp included)."""

    source: str  # demo-general, demo-code or a local file
    texts: int
    max_tokens: int
    window: int  # the w of "share inside the window"
    stamp: str = ""  # the file's fingerprint (dashboard.stamps.path_stamp); empty for built-ins


@st.cache_data(max_entries=16, show_spinner=False)
def source_texts(source: str, limit: int, stamp: str) -> list[str]:
    """The first `limit` texts of a built-in set or a local file; `stamp` follows the file."""
    from engine.data import DEMO_CODE, DEMO_GENERAL, load_texts

    if source not in (DEMO_GENERAL, DEMO_CODE) and not Path(source).expanduser().is_file():
        # A hub id would download: this view reads built-in sets and local files only.
        raise SubnetScopeError(f"no text file at '{source}' (or pick demo-general / demo-code)")
    texts = load_texts(source, limit=limit)
    if not texts:
        raise SubnetScopeError(f"'{source}' holds no text")
    return texts


@st.cache_data(max_entries=8, show_spinner=False)
def layout_of(source: str, dtype: str) -> pd.DataFrame:
    """Layer kind, window, RoPE base and head layout, read from the loaded model's config."""
    from engine.attention import layout_table

    return layout_table(shared_model(source, dtype).model.config)


@st.cache_data(max_entries=16, show_spinner="Measuring every head…")
def stats_of(source: str, dtype: str, config: TextsConfig) -> HeadStats:
    """Per-head statistics of the base model over the configured texts."""
    from engine.attention import head_stats

    texts = source_texts(config.source, config.texts, config.stamp)
    loaded = shared_model(source, dtype)
    return head_stats(loaded, texts, window=config.window, max_tokens=config.max_tokens)


@st.cache_data(max_entries=16, show_spinner="Computing the attention map…")
def map_of(source: str, dtype: str, text: str, layer: int, max_tokens: int) -> AttentionMap:
    from engine.attention import attention_map

    return attention_map(shared_model(source, dtype), text, layer, max_tokens=max_tokens)


# base vs tuned ------------------------------------------------------------------------------
@st.cache_data(max_entries=4, show_spinner=False)
def tuned_list(source: str, stamp: str) -> list[TunedChoice]:
    """Finished runs' checkpoints and adapters trained from `source`; `stamp` (the workspace
    stamp) brings in new ones."""
    from engine.attention import tuned_choices

    return tuned_choices(source)


@st.cache_data(max_entries=8, show_spinner="Measuring the tuned heads…")
def tuned_of(
    source: str, dtype: str, choice: TunedChoice, stamp: str, config: TextsConfig
) -> HeadStats:
    """The tuned model's statistics on the same token ids; `stamp` follows the choice's files."""
    from engine.attention import tuned_stats

    texts = source_texts(config.source, config.texts, config.stamp)
    return tuned_stats(
        shared_model(source, dtype),
        choice,
        texts,
        window=config.window,
        max_tokens=config.max_tokens,
    )


@st.cache_data(max_entries=8, show_spinner=False)
def compared(
    source: str, dtype: str, choice: TunedChoice, stamp: str, config: TextsConfig, stat: str
) -> pd.DataFrame:
    """Base vs tuned, per head: each statistic's base, tuned and delta; `rank` 1 = the head
    whose `stat` changed most."""
    from engine.attention import compare_heads

    base = reference_of(source, dtype, choice, stamp, config)
    return compare_heads(base, tuned_of(source, dtype, choice, stamp, config), stat)


@st.cache_data(max_entries=8, show_spinner="Measuring the reference heads…")
def reference_of(
    source: str, dtype: str, choice: TunedChoice, stamp: str, config: TextsConfig
) -> HeadStats:
    """What the tuned side is compared against: a run checkpoint's own saved base (same
    precision as its checkpoints), else the base model's statistics."""
    from engine.attention import reference_stats

    if choice.base is None:
        return stats_of(source, dtype, config)
    texts = source_texts(config.source, config.texts, config.stamp)
    return reference_stats(
        shared_model(source, dtype),
        choice,
        texts,
        window=config.window,
        max_tokens=config.max_tokens,
    )


# localize -----------------------------------------------------------------------------------
@st.cache_data(max_entries=32, show_spinner=False)
def localized_perplexity(
    source: str, dtype: str, layers: tuple[int, ...], window: int, text: str, max_tokens: int
) -> PerplexityResult:
    """Perplexity of the text's first `max_tokens` tokens in one window (every token sees all
    before it), with `layers` made sliding-window layers of width `window` (none: the base)."""
    from engine.attention import localized
    from engine.evaluation import perplexity

    loaded = shared_model(source, dtype)
    with localized(loaded, layers, window) if layers else nullcontext():
        return perplexity(loaded, text, max_tokens=max_tokens, window=max_tokens, stride=max_tokens)


@st.cache_data(max_entries=32, show_spinner=False)
def localized_generation(
    source: str, dtype: str, layers: tuple[int, ...], window: int, prompt: str, max_new: int
) -> str:
    """The greedy continuation with `layers` made local (none: the base)."""
    from engine.attention import localized
    from engine.models import generate_text

    loaded = shared_model(source, dtype)
    with localized(loaded, layers, window) if layers else nullcontext():
        return generate_text(loaded, prompt, max_new_tokens=max_new).text


# finished jobs ------------------------------------------------------------------------------
def _listed(found: Any) -> tuple[str, str, str]:
    model = str(found.params.get("model", "?"))
    return str(found.path), f"{'demo part' if found.is_demo else model} · {found.view.id}", model


@st.cache_data(max_entries=4, show_spinner=False)
def sweep_results(stamp: str) -> list[tuple[str, str, str]]:
    """(result folder, label, model) of every finished sweep, the demo's first."""
    from engine.attention import sweep_results as finished

    return [_listed(found) for found in finished()]


@st.cache_data(max_entries=4, show_spinner=False)
def context_results(stamp: str) -> list[tuple[str, str, str]]:
    """(result folder, label, model) of every finished context-length run, the demo's first."""
    from engine.attention import context_results as finished

    return [_listed(found) for found in finished()]


@st.cache_data(max_entries=8, show_spinner=False)
def result_table(folder: str, name: str, stamp: str) -> pd.DataFrame:
    """One parquet table of a job's result folder; `stamp` (the workspace stamp) re-reads it."""
    path = Path(folder) / name
    if not path.is_file():
        raise SubnetScopeError(f"no {name} in '{folder}'")
    return pd.read_parquet(path)
