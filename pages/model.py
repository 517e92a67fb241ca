"""Model page: what the model is made of, a playground with per-call neuron masks, perplexity."""

from __future__ import annotations

import streamlit as st

from dashboard.loaders import chosen_dtype, shared_model
from dashboard.sources import model_picker
from dashboard.views import model as view
from engine.errors import SubnetScopeError


def main() -> None:
    source = model_picker()
    if source is None:
        st.info("Enter a hub id in the sidebar.")
        return
    try:
        dtype = chosen_dtype()
        loaded = shared_model(source, dtype)
        view.facts_header(loaded)
        view.architecture_section(source, dtype)
        view.playground(loaded)
        view.perplexity_section(loaded, source)
    except SubnetScopeError as exc:
        st.error(str(exc))


main()
