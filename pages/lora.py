"""LoRA blender: blend PEFT adapters live, their geometry and delta activations, LoRA training."""

from __future__ import annotations

import streamlit as st

from dashboard.sources import model_picker
from dashboard.stamps import follow_workspace
from dashboard.views import lora as view
from engine.errors import SubnetScopeError

VIEWS = ["Generations", "Geometry", "Delta map", "Save", "Generate", "Train"]


def main() -> None:
    st.title("LoRA blender")
    follow_workspace()
    view.generator_from_url()  # before the View control: a generator's link opens Generate
    st.caption(
        "Weighted blends of PEFT adapters for one base: every combination type of PEFT's "
        "add_weighted_adapter, with svd and cat done exactly from the factors, and each blend's "
        "error against the exact weighted sum Σ wᵢ·sᵢ·BᵢAᵢ. Blends apply per call: sliders need "
        "no reload and the shared model never changes."
    )
    paths, names = view.pick_adapters()
    fallback = model_picker(st.sidebar)
    shown = st.segmented_control("View", VIEWS, default=VIEWS[0], key="lora_view") or VIEWS[0]
    if shown == "Generate":  # needs no picked adapter: a trained generator makes one
        view.generate_panel()
        return
    if not paths:
        st.info(
            "No adapters picked: pick saved ones in the sidebar's Adapters list (the demo "
            "trains three task adapters in the background), type their folders, or train one here."
        )
        if fallback is not None:
            view.train_panel(fallback)
        return
    picked, adapters = view.opened(paths, names)
    source = view.base_source(adapters, fallback)
    for warning in adapters.warnings:
        st.warning(warning)
    if shown == "Train":
        view.train_panel(source)
        return
    with st.expander(f"{len(adapters.names)} adapters on {source}", expanded=False):
        view.adapters_table(adapters)
    spec = view.blend_controls(adapters)
    result = view.blend_now(picked, adapters, spec)
    view.blend_headline(result)
    if shown == "Generations":
        view.generations_panel(source, picked, adapters, spec)
    elif shown == "Geometry":
        view.geometry_panel(picked, adapters, spec, source)
    elif shown == "Delta map":
        view.deltas_panel(source, picked, spec)
    else:
        view.save_panel(adapters, result, source)


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
