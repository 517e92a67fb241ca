"""The shared source picker: the demo, local model folders under the configured roots, a hub id."""

from __future__ import annotations

import streamlit as st

from engine.models.catalog import list_local_models, model_roots
from engine.runtime import hub_reachable

_HUB = "Hub id…"
MODEL_KEY = "model_source"


@st.cache_data(ttl=30, show_spinner=False)
def _local_choices() -> list[tuple[str, str]]:
    return [(c.source, c.label) for c in list_local_models()]


def model_picker(container=st.sidebar) -> str | None:
    """The model source chosen in the sidebar, kept across pages in session state."""
    choices = _local_choices()
    labels = {source: label for source, label in choices}
    options = [source for source, _ in choices]
    online = hub_reachable()
    if online:
        options.append(_HUB)
    current = st.session_state.get(MODEL_KEY, options[0])
    index = options.index(current) if current in options else 0
    picked = container.selectbox(
        "Model",
        options,
        index=index,
        format_func=lambda s: labels.get(s, s),
        help="Local folders come from: " + ", ".join(str(p) for p in model_roots()),
        key="model_picker",
    )
    if picked == _HUB:
        hub_id = container.text_input("Hub id", placeholder="HuggingFaceTB/SmolLM2-135M-Instruct")
        if not hub_id:
            return None
        picked = hub_id.strip()
    elif not online:
        container.caption("Offline: models from local folders only.")
    st.session_state[MODEL_KEY] = picked
    return picked


def artifact_picker(
    label: str,
    choices: list[tuple[str, str]],
    *,
    typed_label: str,
    key: str,
    placeholder: str,
    help: str,
    container=st.sidebar,
) -> str | None:
    """Pick one of the (path, label) `choices` that jobs made, or type a path; `?<key>=path` in
    the URL preselects. Returns the path, or None while nothing is given."""
    labels = dict(choices)
    other = f"{typed_label}…"
    options = [path for path, _ in choices] + [other]
    text_key = f"{key}_typed"
    wanted = st.query_params.get(key)
    if wanted and key not in st.session_state:
        st.session_state[key] = wanted if wanted in labels else other
        st.session_state[text_key] = wanted
    picked = container.selectbox(
        label, options, format_func=lambda p: labels.get(p, p), key=key, help=help
    )
    if picked == other:
        typed = container.text_input(typed_label, key=text_key, placeholder=placeholder)
        return typed.strip() or None
    return picked
