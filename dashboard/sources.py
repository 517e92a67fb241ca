"""The shared source picker: the demo, local model folders under the configured roots, a hub id."""

from __future__ import annotations

import streamlit as st

from dashboard.loaders import DTYPE_KEY, chosen_dtype, memory_caption
from dashboard.stamps import models_stamp
from engine.models import DTYPE_CHOICES, list_local_models, model_roots
from engine.runtime import hub_reachable

_HUB = "Hub id…"
MODEL_KEY = "model_source"
_DTYPE_LABELS = {
    "auto": "auto (the checkpoint's own)",
    "bf16": "bf16",
    "fp16": "fp16",
    "fp32": "fp32",
}


@st.cache_data(max_entries=4, show_spinner=False)
def _local_choices(stamp: tuple) -> list[tuple[str, str]]:
    return [(c.source, c.label) for c in list_local_models()]


def local_choices() -> list[tuple[str, str]]:
    """(source, label) of the demo and every model folder under the model roots; a folder saved
    a moment ago (a pruned model) is listed at once."""
    return _local_choices(models_stamp())


def ignored_link(name: str, value: str, why: str) -> None:
    """A URL parameter that is not one of the listed choices: said, and nothing done with it (a
    link never names an arbitrary path and never starts a download)."""
    shown = value if len(value) <= 80 else value[:80] + "…"
    st.warning(f"Ignored `{name}={shown!r}` in the link: {why}.", icon=":material/link_off:")


def hub_picker(container) -> str | None:
    """A hub id typed in, used only once the button below it is pressed (loading it may download
    gigabytes; nothing else, a URL parameter least of all, starts that)."""
    from engine.models import is_hub_id

    hub_id = container.text_input(
        "Hub id", placeholder="HuggingFaceTB/SmolLM2-135M-Instruct", key="model_hub_id"
    ).strip()
    if not hub_id:
        return None
    if not is_hub_id(hub_id):
        container.error(f"{hub_id[:80]!r} is not a hub id (owner/name).")
        return None
    if container.button(f"Load {hub_id}", key="model_hub_go", help="May download the model"):
        st.session_state["model_hub_confirmed"] = hub_id
    return hub_id if st.session_state.get("model_hub_confirmed") == hub_id else None


def model_picker(container=st.sidebar) -> str | None:
    """The model source chosen in the sidebar, kept across pages in session state."""
    choices = local_choices()
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
        picked = hub_picker(container)
        if picked is None:
            return None
    elif not online:
        container.caption("Offline: models from local folders only.")
    st.session_state[MODEL_KEY] = picked
    dtype = precision_picker(container)
    caption = memory_caption(picked, dtype, models_stamp())
    if caption:
        container.caption(caption)
    return picked


def precision_picker(container=st.sidebar) -> str:
    """The dtype every view loads the model in (auto | bf16 | fp16 | fp32), kept across pages in
    session state; `?dtype=bf16` in the URL preselects one (anything else is said and ignored)."""
    wanted = st.query_params.get("dtype")
    if wanted and not st.session_state.get("dtype_url_done"):
        st.session_state["dtype_url_done"] = True
        if wanted in DTYPE_CHOICES:
            st.session_state[DTYPE_KEY] = wanted
            st.session_state.pop("precision_picker", None)  # let the picker take it below
        else:
            ignored_link("dtype", wanted, f"it is none of {', '.join(DTYPE_CHOICES)}")
    current = chosen_dtype()
    picked = container.selectbox(
        "Precision",
        DTYPE_CHOICES,
        index=DTYPE_CHOICES.index(current) if current in DTYPE_CHOICES else 0,
        format_func=_DTYPE_LABELS.get,
        help="The dtype the model is loaded in, once for every view and session: auto keeps "
        "the checkpoint's own (bf16 stays bf16) where the device computes in it, else fp32. "
        "Jobs started here run in it too.",
        key="precision_picker",
    )
    st.session_state[DTYPE_KEY] = picked
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
    the URL preselects one of the choices (nothing else). Returns the path, or None while nothing
    is given. When new choices appear (a job finished) while nothing is picked, the first is."""
    labels = dict(choices)
    other = f"{typed_label}…"
    options = [path for path, _ in choices] + [other]
    text_key, seen_key = f"{key}_typed", f"{key}_seen"
    wanted = st.query_params.get(key)
    if wanted and key not in st.session_state:
        if wanted in labels:
            st.session_state[key] = wanted
        else:
            ignored_link(key, wanted, "it is none of the results listed here")
    seen = tuple(labels)
    if (
        choices
        and st.session_state.get(seen_key, seen) != seen
        and st.session_state.get(key) == other
        and not st.session_state.get(text_key, "").strip()
    ):
        st.session_state[key] = choices[0][0]
    st.session_state[seen_key] = seen
    picked = container.selectbox(
        label, options, format_func=lambda p: labels.get(p, p), key=key, help=help
    )
    if picked == other:
        typed = container.text_input(typed_label, key=text_key, placeholder=placeholder)
        return typed.strip() or None
    return picked
