"""TFLite explorer: open a .tflite / .task / .litertlm file, see its graph, findings and tensors."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import tflite_sections as panels
from dashboard.tflite_loaders import available_files, file_key, opened_file, opened_reader
from engine.errors import SubnetScopeError
from engine.tflite.samples import save_upload, tflite_roots

VIEWS = ["Summary", "Ops", "Tensors", "Graph", "Findings"]


def _label(path: str) -> str:
    p = Path(path)
    return f"{p.name}  ({p.parent.name})"


def pick_file(label: str, key: str) -> str | None:
    files = available_files(tuple(str(r) for r in tflite_roots()))
    upload = st.sidebar.file_uploader(
        f"…or upload ({label})", type=["tflite", "task", "litertlm"], key=f"{key}_upload"
    )
    if upload is not None:
        return str(save_upload(upload.name, upload.getvalue()))
    if not files:
        st.info("No TFLite files found under: " + ", ".join(map(str, tflite_roots())))
        return None
    return st.sidebar.selectbox(
        label,
        files,
        format_func=_label,
        key=key,
        help="Files under: " + ", ".join(map(str, tflite_roots())),
    )


def pick_section(path: str, key: str) -> str | None:
    """For bundles, the TFLite section to open; None for a plain model."""
    handle = opened_file(file_key(path))
    if handle.format == "tflite":
        return None
    with st.sidebar.expander(f"{len(handle.sections)} sections in this {handle.format} file"):
        st.dataframe(
            [
                {
                    "section": s.name,
                    "kind": s.kind,
                    "offset": s.offset,
                    "bytes": s.size,
                    "stored": not s.compressed,
                }
                for s in handle.sections
            ],
            hide_index=True,
        )
    names = [s.name for s in handle.models]
    if not names:
        raise SubnetScopeError(f"{Path(path).name} holds no TFLite model")
    return st.sidebar.selectbox("Section", names, key=f"{key}_section")


def main() -> None:
    st.title("TFLite explorer")
    path = pick_file("File", "tflite_file")
    if path is None:
        return
    section = pick_section(path, "tflite_file")
    key = file_key(path)
    reader = opened_reader(key, section)
    info = reader.info()
    st.caption(f"{info.name} · {info.file_bytes / 1e6:,.1f} MB · read by mmap, values on demand")
    if st.sidebar.toggle("Compare with another file (diff)", key="tflite_diff"):
        other = pick_file("Compare with", "tflite_other")
        if other is not None:
            other_section = pick_section(other, "tflite_other")
            panels.diff_panel(info, opened_reader(file_key(other), other_section).info())
        return
    # One panel per run (not st.tabs, which would compute and draw all of them every time).
    view = st.segmented_control("View", VIEWS, default="Summary", key="tflite_view") or "Summary"
    if view == "Summary":
        panels.summary(info, key, section)
    elif view == "Ops":
        panels.ops_panel(info)
    elif view == "Tensors":
        panels.tensors_panel(info, reader)
    elif view == "Graph":
        panels.graph_panel(info, key, section)
    else:
        panels.findings_panel(info, key, section)


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
