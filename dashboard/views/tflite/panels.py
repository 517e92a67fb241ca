"""The TFLite explorer's panels: summary, ops, tensors, graph, findings, diff. Each takes the
opened reader's graph and draws; the numerics live in engine.tflite."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard.downloads import downloads
from dashboard.jobs_panel import job_launcher, job_watcher
from dashboard.views.tflite.charts import (
    heatmap_chart,
    op_histogram_chart,
    value_histogram_chart,
    weight_error_chart,
)
from dashboard.views.tflite.loaders import (
    available_files,
    built_converted,
    converted_hf_folder,
    file_key,
    findings,
    histogram,
    layers,
    opened_file,
    params_by,
    recovered,
    weight_match,
)
from engine.errors import SubnetScopeError
from engine.tflite import (
    SAMPLES,
    ModelInfo,
    SubgraphInfo,
    TFLiteReader,
    converted_root,
    diff_graphs,
    findings_table,
    layer_graph,
    load_hf_config,
    neighbourhood,
    pooled_2d,
    save_upload,
    summarize,
    tensor_stats,
    tflite_roots,
    to_dot,
    value_sample,
)

GRAPH_OP = "tflite_graph_op"  # session keys: the op / tensor the graph view centres on
GRAPH_TENSOR = "tflite_graph_tensor"


def _label(path: str) -> str:
    p = Path(path)
    if p.parent.parent == converted_root():  # <sample>-<key>/model.tflite
        return f"{p.name}  (converted: {p.parent.name.rsplit('-', 1)[0]})"
    return f"{p.name}  ({p.parent.name})"


def converter_samples() -> None:
    """Offer the converter-made samples' build (a job) while any is missing."""
    built = built_converted()
    if len(built) == len(SAMPLES):
        return
    with st.sidebar.expander("Samples from Google's converter", expanded=not built):
        st.caption(
            f"{len(built)} of {len(SAMPLES)} built. litert-torch converts the demo model "
            "(fp32 and int8) and tiny Gemma 3, Gemma 3n and Qwen2 configs: about 5 minutes, "
            "plus 70 s to install the converter's own environment the first time."
        )
        job_id = job_launcher(
            "tflite.convert_samples",
            {},
            label="Convert the samples",
            key="tflite_convert_job",
            backend_choice=False,
        )
        if job_id:
            job_watcher(job_id, key="tflite_convert_watch", here="tflite")


def pick_file(label: str, key: str) -> str | None:
    files = available_files(tuple(str(r) for r in tflite_roots()), built_converted())
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


def summary(info: ModelInfo, key: tuple, section: str | None) -> None:
    ops = sum(len(sg.ops) for sg in info.subgraphs)
    tensors = sum(len(sg.tensors) for sg in info.subgraphs)
    params = params_by(key, section)
    cols = st.columns(5)
    cols[0].metric("Subgraphs", len(info.subgraphs))
    cols[1].metric("Ops", f"{ops:,}")
    cols[2].metric("Tensors", f"{tensors:,}")
    cols[3].metric("Parameter bytes", f"{params['bytes'].sum() / 1e6:,.2f} MB")
    cols[4].metric("Schema version", info.version)
    if info.description:
        st.caption(info.description)
    left, right = st.columns(2)
    with left:
        st.markdown("**Op types**")
        st.altair_chart(op_histogram_chart(histogram(key, section)), width="stretch")
    with right:
        st.markdown("**Parameters by dtype and quantization**")
        st.dataframe(params, hide_index=True, width="stretch")
        if info.signatures:
            st.markdown("**Signatures**")
            st.dataframe(
                pd.DataFrame(
                    {
                        "signature": s.key,
                        "subgraph": s.subgraph,
                        "inputs": ", ".join(s.inputs),
                        "outputs": ", ".join(s.outputs),
                    }
                    for s in info.signatures
                ),
                hide_index=True,
            )
        if info.metadata:
            st.markdown("**Metadata entries**")
            st.json(info.metadata, expanded=False)


def _subgraph_picker(info: ModelInfo, key: str) -> SubgraphInfo:
    index = st.selectbox(
        "Subgraph",
        range(len(info.subgraphs)),
        format_func=lambda i: f"{i}: {info.subgraphs[i].name or '(unnamed)'}",
        key=key,
    )
    return info.subgraphs[index]


def ops_table(sg: SubgraphInfo) -> pd.DataFrame:
    name = {t.index: t.name for t in sg.tensors}
    return pd.DataFrame(
        {
            "index": op.index,
            "opcode": op.opcode,
            "version": op.version,
            "inputs": ", ".join(name.get(i, "–") for i in op.inputs),
            "outputs": ", ".join(name.get(i, "–") for i in op.outputs),
            "options": str(op.options) if op.options else "",
        }
        for op in sg.ops
    )


def tensors_table(sg: SubgraphInfo) -> pd.DataFrame:
    rows = []
    for t in sg.tensors:
        q = t.quantization
        rows.append(
            {
                "index": t.index,
                "name": t.name,
                "shape": "×".join(map(str, t.shape)),
                "dtype": t.dtype,
                "bytes": t.buffer_bytes,
                "quantization": ""
                if q is None
                else ("per-channel" if q.per_channel else "per-tensor"),
                "variable": t.is_variable,
            }
        )
    return pd.DataFrame(rows)


def _regex(text: str) -> re.Pattern | None:
    if not text:
        return None
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        st.error(f"'{text}' is not a valid regular expression: {exc}")
        return None


def ops_panel(info: ModelInfo) -> None:
    sg = _subgraph_picker(info, "ops_subgraph")
    table = ops_table(sg)
    cols = st.columns([2, 3])
    types = cols[0].multiselect("Op types", sorted(table["opcode"].unique()), key="ops_types")
    pattern = _regex(cols[1].text_input("Search tensor names (regex)", key="ops_regex"))
    if types:
        table = table[table["opcode"].isin(types)]
    if pattern is not None:
        mask = table["inputs"].str.contains(pattern) | table["outputs"].str.contains(pattern)
        table = table[mask]
    st.caption(f"{len(table):,} of {len(sg.ops):,} ops · select a row to see its neighbourhood")
    event = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        height=360,
        on_select="rerun",
        selection_mode="single-row",
        key="ops_table",
    )
    rows = event.selection.rows if event else []
    if rows:
        st.session_state[GRAPH_OP] = (sg.index, int(table.iloc[rows[0]]["index"]))
        st.session_state.pop(GRAPH_TENSOR, None)
        st.info("Open the Graph view to see this op's neighbourhood.")
    downloads(table, f"ops-subgraph{sg.index}", "ops")


def tensors_panel(info: ModelInfo, reader: TFLiteReader) -> None:
    sg = _subgraph_picker(info, "tensors_subgraph")
    table = tensors_table(sg)
    cols = st.columns([3, 1])
    pattern = _regex(cols[0].text_input("Search names (regex)", key="tensors_regex"))
    constants = cols[1].toggle("Constants only", key="tensors_constants")
    if pattern is not None:
        table = table[table["name"].str.contains(pattern)]
    if constants:
        table = table[table["bytes"] > 0]
    st.caption(f"{len(table):,} of {len(sg.tensors):,} tensors · select a row to inspect it")
    event = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        height=320,
        on_select="rerun",
        selection_mode="single-row",
        key="tensors_table",
    )
    downloads(table, f"tensors-subgraph{sg.index}", "tensors")
    rows = event.selection.rows if event else []
    options = table["index"].tolist()
    selected = int(table.iloc[rows[0]]["index"]) if rows else None
    picked = st.selectbox(
        "Inspect tensor",
        options,
        index=options.index(selected) if selected in options else None,
        format_func=lambda i: f"{i}: {sg.tensors[i].name}",
        placeholder="select a row above, or pick here",
    )
    if picked is not None:
        st.session_state[GRAPH_TENSOR] = (sg.index, int(picked))
        st.session_state.pop(GRAPH_OP, None)
        tensor_inspector(reader, sg, int(picked))


def tensor_inspector(reader: TFLiteReader, sg: SubgraphInfo, index: int) -> None:
    t = sg.tensors[index]
    st.subheader(t.name or f"tensor {index}")
    q = t.quantization
    st.caption(
        f"shape {list(t.shape)} · signature {list(t.shape_signature or ())} · {t.dtype} · "
        f"{t.buffer_bytes:,} bytes · {'variable' if t.is_variable else 'not variable'}"
    )
    if q is not None:
        st.caption(
            f"quantization: {len(q.scale)} scale(s), zero point(s) {list(q.zero_point[:4])}"
            f"{'…' if len(q.zero_point) > 4 else ''}, quantized dimension {q.quantized_dimension}"
        )
    if not t.buffer_bytes:
        st.info("An activation: it has no stored values. The Graph view shows where it flows.")
        return
    values = reader.tensor_array(sg.index, index)
    stats = tensor_stats(values)
    st.dataframe(pd.DataFrame([stats]), hide_index=True)
    if np.issubdtype(values.dtype, np.number):
        left, right = st.columns(2)
        left.altair_chart(value_histogram_chart(value_sample(values)), width="stretch")
        if values.ndim >= 1 and values.size > 1:
            right.altair_chart(heatmap_chart(pooled_2d(values)), width="stretch")
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values))
    safe = re.sub(r"[^\w.-]+", "_", t.name or f"tensor{index}")
    st.download_button("Download .npy", buffer.getvalue(), f"{safe}.npy", key="tensor_npy")


def graph_panel(info: ModelInfo, key: tuple, section: str | None) -> None:
    sg = _subgraph_picker(info, "graph_subgraph")
    layer_rows = layers(key, section, sg.index)
    mode = st.radio(
        "Show",
        ["Neighbourhood", "Layer"],
        horizontal=True,
        key="graph_mode",
        disabled=layer_rows.empty,
    )
    if mode == "Layer" and not layer_rows.empty:
        layer = st.selectbox("Layer", layer_rows["layer"].tolist(), key="graph_layer")
        graph = layer_graph(sg, int(layer))
    else:
        op_pick = st.session_state.get(GRAPH_OP)
        tensor_pick = st.session_state.get(GRAPH_TENSOR)
        cols = st.columns(3)
        centre = cols[0].radio(
            "Centre on",
            ["op", "tensor"],
            horizontal=True,
            key="graph_on",
            index=1 if tensor_pick and not op_pick else 0,
        )
        picked = (op_pick if centre == "op" else tensor_pick) or (sg.index, 0)
        limit = max(len(sg.ops) if centre == "op" else len(sg.tensors), 1) - 1
        start = picked[1] if picked[0] == sg.index else 0
        index = cols[1].number_input("Index", 0, limit, min(start, limit), key="graph_index")
        hops = cols[2].slider("Hops", 1, 6, 2, key="graph_hops")
        if not sg.ops:
            st.info("This subgraph has no ops.")
            return
        kwargs = {"op": int(index)} if centre == "op" else {"tensor": int(index)}
        graph = neighbourhood(sg, hops=hops, **kwargs)
    st.graphviz_chart(to_dot(graph), width="stretch")


def recovered_panel(info: ModelInfo, key: tuple, section: str | None) -> None:
    """The config read off the graph, one row per field with its evidence; compared with the
    source config when the file is a converter sample."""
    rc = recovered(key, section)
    if not rc.any_found:
        return
    st.markdown(f"**Config read from the graph** · signature `{rc.signature}`")
    table = rc.to_table(info.subgraphs[rc.subgraph])
    source = converted_hf_folder(key[0])
    if source is not None and (Path(source) / "config.json").is_file():
        compared = rc.compare_with(load_hf_config(source))
        table.insert(2, "source", compared["source"])
        table.insert(3, "equal", compared["equal"])
        st.caption(f"Compared with the config it was converted from ({source}).")
    st.caption("Unknown: the graph does not show it (the how column says why); none: absent.")
    st.dataframe(table, hide_index=True, width="stretch", key="recovered_table")
    downloads(table, "recovered_config", "recovered_config")


def findings_panel(info: ModelInfo, key: tuple, section: str | None) -> None:
    recovered_panel(info, key, section)
    found = findings(key, section)
    if not found:
        st.info(
            "No architecture findings: none of the structures looked for (per-layer FFN widths, "
            "AltUp streams, LAuReL branches, per-layer embeddings, tied embedding, local/global "
            "attention) has evidence in this graph."
        )
        return
    table = findings_table(found)
    st.caption("Select a finding to see its evidence in the graph.")
    event = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="findings_table",
    )
    downloads(table, "findings", "findings")
    rows = event.selection.rows if event else []
    if rows:
        finding = found[rows[0]]
        st.markdown(f"**{finding.title}** · confidence {finding.confidence}")
        st.write(finding.detail)
        if finding.data:
            st.json(finding.data, expanded=False)
        if finding.evidence_ops:
            sg = info.subgraphs[finding.subgraph]
            st.caption(
                f"Evidence ops {list(finding.evidence_ops[:20])}: the first one's neighbourhood"
            )
            st.graphviz_chart(to_dot(neighbourhood(sg, op=finding.evidence_ops[0], hops=3)))


def diff_panel(info_a: ModelInfo, info_b: ModelInfo) -> None:
    result = diff_graphs(info_a, info_b)
    if result.identical:
        st.success(f"{info_a.name} and {info_b.name} have the same graph.")
        return
    told = summarize(info_a, info_b, result)
    st.markdown(f"**{told.headline}**")
    if told.lines:
        st.markdown("\n".join(f"- {line}" for line in told.lines))
    with st.expander("Rows by status"):
        st.json(result.summary, expanded=True)
    left, right = st.columns(2)
    with left:
        st.markdown("**Ops added, removed or changed**")
        ops = result.changed_ops()
        st.dataframe(ops, hide_index=True, width="stretch")
        downloads(ops, "diff-ops", "diff_ops")
    with right:
        st.markdown("**Tensors added, removed or changed**")
        tensors = result.changed_tensors()
        st.dataframe(tensors, hide_index=True, width="stretch")
        downloads(tensors, "diff-tensors", "diff_tensors")


def weights_panel(key: tuple, section: str | None) -> None:
    """Each weight matched to the HF parameter it came from, with |Δ| after dequantizing: the
    source folder of a converter sample is known; for any other file the user names one."""
    folder = converted_hf_folder(key[0])
    if folder is None:
        folder = st.text_input(
            "Source Hugging Face folder", key="tflite_weights_hf", placeholder="/path/to/model"
        ).strip()
        if not folder:
            st.info("Name the HF model folder (config.json + *.safetensors) it was converted from.")
            return
    else:
        st.caption(f"Converter sample: compared with the folder it was converted from ({folder}).")
    match = weight_match(key, section, folder)
    table = match.table()
    quantized = match.quantized_rows
    cols = st.columns(4)
    cols[0].metric("Tensors matched", f"{len(match.rows)} / {match.constants}")
    cols[1].metric("HF parameters matched", f"{len(match.hf_placements)} / {match.hf_total}")
    cols[2].metric("Max |Δ|", f"{match.max_abs:.3g}")
    cols[3].metric("All within step", "yes" if match.all_within_step else "no")
    st.caption(
        f"{match.summary()} · {match.seconds:.1f} s. Float weights must match exactly; "
        f"{len(quantized)} quantized ones within half a step (per channel)."
    )
    shared = match.shared()
    if shared:
        places = "; ".join(sorted({", ".join(s) for s in shared.values()}))
        st.caption(
            f"{len(shared)} HF parameters appear in several subgraphs, one buffer each ({places})."
        )
    if not table.empty:
        st.altair_chart(weight_error_chart(table), width="stretch")
        st.dataframe(table, hide_index=True, width="stretch", key="weights_table")
        downloads(table, "weights", "weights")
    tflite_rest, hf_rest = match.unmatched_tables()
    left, right = st.columns(2)
    left.markdown(f"**TFLite constants with no HF parameter** ({len(tflite_rest)})")
    left.dataframe(tflite_rest, hide_index=True, key="weights_tflite_unmatched")
    right.markdown(f"**HF parameters with no TFLite constant** ({len(hf_rest)})")
    right.dataframe(hf_rest, hide_index=True, key="weights_hf_unmatched")
