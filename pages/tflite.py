"""TFLite explorer: open a .tflite / .task / .litertlm file, see its graph, findings and tensors."""

from __future__ import annotations

import streamlit as st

from dashboard.views import tflite as view
from engine.errors import SubnetScopeError

VIEWS = ["Summary", "Ops", "Tensors", "Graph", "Findings", "Weights"]


def main() -> None:
    st.title("TFLite explorer")
    view.converter_samples()
    path = view.pick_file("File", "tflite_file")
    if path is None:
        return
    section = view.pick_section(path, "tflite_file")
    key = view.file_key(path)
    reader = view.opened_reader(key, section)
    info = reader.info()
    st.caption(f"{info.name} · {info.file_bytes / 1e6:,.1f} MB · read by mmap, values on demand")
    if st.sidebar.toggle("Compare with another file (diff)", key="tflite_diff"):
        other = view.pick_file("Compare with", "tflite_other")
        if other is not None:
            other_section = view.pick_section(other, "tflite_other")
            view.diff_panel(info, view.opened_reader(view.file_key(other), other_section).info())
        return
    # One panel per run (not st.tabs, which would compute and draw all of them every time).
    shown = st.segmented_control("View", VIEWS, default="Summary", key="tflite_view") or "Summary"
    if shown == "Summary":
        view.summary(info, key, section)
    elif shown == "Ops":
        view.ops_panel(info)
    elif shown == "Tensors":
        view.tensors_panel(info, reader)
    elif shown == "Graph":
        view.graph_panel(info, key, section)
    elif shown == "Weights":
        view.weights_panel(key, section)
    else:
        view.findings_panel(info, key, section)


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
