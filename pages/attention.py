"""Attention: which heads look local or global, what fine-tuning changed, can a layer go local."""

from __future__ import annotations

import streamlit as st

from dashboard.sources import model_picker
from dashboard.stamps import follow_workspace
from dashboard.views import attention as view
from engine.errors import SubnetScopeError

VIEWS = ["Heads", "Compare", "Localize", "Context length"]


def main() -> None:
    st.title("Attention")
    follow_workspace()
    st.caption(
        "Per head and layer (seed 003): how spread the attention is, how far back it looks, how "
        "much stays inside a window of w tokens, how much lands on the first token; local "
        "(sliding-window) and global layers marked. Compare a fine-tuned checkpoint or adapter, "
        "make global layers local per call, and follow the statistics as the text grows."
    )
    source = model_picker(st.sidebar)
    if source is None:
        st.info("Pick a model in the sidebar.")
        return
    config = view.texts_picker(st.sidebar)
    shown = st.segmented_control("View", VIEWS, default=VIEWS[0], key="attention_view") or VIEWS[0]
    if shown == "Heads":
        view.heads_panel(source, config)
    elif shown == "Compare":
        view.compare_panel(source, config)
    elif shown == "Localize":
        view.localize_panel(source, config)
    else:
        view.context_panel(source)


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
