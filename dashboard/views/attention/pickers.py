"""The Attention view's inputs: which texts the statistics read, a statistic, a head, a tuned
checkpoint or adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from dashboard.sources import artifact_picker
from dashboard.stamps import path_stamp, workspace_stamp
from dashboard.views.attention.loaders import TextsConfig, tuned_list
from engine.attention import STAT_LABELS, STATS
from engine.data import DEMO_CODE, DEMO_GENERAL
from engine.errors import SubnetScopeError

if TYPE_CHECKING:
    import pandas as pd

    from engine.attention import TunedChoice

_FILE = "A text file…"


def texts_picker(bar=st.sidebar) -> TextsConfig:
    """The texts every statistic on the page reads (and the w of the window share)."""
    bar.markdown("**Texts**")
    picked = bar.selectbox(
        "Text source",
        [DEMO_GENERAL, DEMO_CODE, _FILE],
        key="attention_text_source",
        help="the demo's prose or code, or a local .txt/.jsonl/.parquet file",
    )
    if picked == _FILE:
        picked = bar.text_input(
            "Text file", key="attention_text_file", placeholder="/path/to/texts.txt"
        ).strip()
        if not picked:
            raise SubnetScopeError("type a text file's path, or pick demo-general / demo-code")
    left, right = bar.columns(2)
    texts = left.number_input("Texts", 1, 64, 4, key="attention_texts")
    max_tokens = right.number_input(
        "Max tokens",
        8,
        4096,
        256,
        step=64,
        key="attention_max_tokens",
        help="each text is cut to this many tokens and run on its own (no padding)",
    )
    window = bar.number_input(
        "Window w",
        1,
        4096,
        32,
        key="attention_window",
        help="'share inside the window' counts the attention on the w most recent tokens "
        "(the query included)",
    )
    return TextsConfig(picked, int(texts), int(max_tokens), int(window), path_stamp(picked))


def stat_picker(key: str) -> str:
    return st.selectbox("Statistic", STATS, format_func=STAT_LABELS.get, key=key)


def head_picker(frame: pd.DataFrame) -> tuple[int, int]:
    """A layer and a head of `frame` (one row per head); `?layer=&head=` preselects once."""
    layers, heads = int(frame["layer"].max()), int(frame["head"].max())
    for name, top in (("layer", layers), ("head", heads)):
        wanted, key = st.query_params.get(name), f"attention_{name}"
        if wanted and key not in st.session_state and wanted.isdigit():
            st.session_state[key] = min(int(wanted), top)
    left, right = st.columns(2)
    layer = left.number_input("Layer", 0, layers, 0, key="attention_layer")
    head = right.number_input("Head", 0, heads, 0, key="attention_head")
    return int(layer), int(head)


def tuned_picker(source: str) -> TunedChoice | None:
    """A finished run's checkpoint or an adapter trained from `source`, or a folder typed in."""
    from engine.attention import choice_of

    choices = {str(c.path): c for c in tuned_list(source, workspace_stamp())}
    path = artifact_picker(
        "Tuned checkpoint or adapter",
        [(p, c.label) for p, c in choices.items()],
        typed_label="A checkpoint or adapter folder",
        key="attention_tuned",
        placeholder="/path/to/checkpoint-100",
        container=st,
        help="checkpoints of finished SFT / GRPO / PPO runs and LoRA adapters trained from this "
        "model (an adapter applies per call on the shared base)",
    )
    if path is None:
        return None
    return choices[path] if path in choices else choice_of(path)
