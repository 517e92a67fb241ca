"""TFLite graph analysis: histograms, parameter bytes, layers, repeated blocks, neighbourhoods."""

from __future__ import annotations

import time

import pytest

from engine.tflite.analysis import (
    GraphIndex,
    layer_groups,
    layer_of_name,
    layer_table,
    op_histogram,
    parameter_bytes,
    parameter_table,
    repeated_blocks,
)
from engine.tflite.findings import find_all
from engine.tflite.neighbourhood import layer_graph, neighbourhood, short_name, to_dot
from tests.tflite_graphs import ModelBuilder, chain, gemma3n_like, plain_transformer


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("layer_12/attn/q", 12),
        ("model.layers.12.mlp.down_proj", 12),
        ("encoder/blocks/12/mlp", 12),
        ("transformer/layer_12/laurel/linear_left", 12),
        ("jit(main)/layer_3/layer_3.post_qkv/mlp/gating_einsum1/btd,df->btf/dot_general", 3),
        ("transformer.h.7.mlp.c_fc", 7),
        ("blk.5.ffn_up", 5),
        ("block_2_expand/Conv2D", 2),
        ("LAYERS.4.x", 4),
        ("conv2d_12/Kernel", None),
        ("model_1/model/batch_normalization_26/FusedBatchNormV3", None),
        ("per_layer_embeddings", None),
        ("attn/layer_norm/scale", None),
        ("player_3", None),
        ("", None),
    ],
)
def test_layer_of_name(name: str, layer: int | None) -> None:
    assert layer_of_name(name) == layer


def test_op_histogram_overall_and_per_subgraph() -> None:
    model = gemma3n_like().model
    overall = op_histogram(model)
    total = sum(len(sg.ops) for sg in model.subgraphs)
    assert overall["count"].sum() == total
    assert overall["share"].sum() == pytest.approx(1.0)
    assert list(overall["count"]) == sorted(overall["count"], reverse=True)
    fc = sum(op.opcode == "FULLY_CONNECTED" for sg in model.subgraphs for op in sg.ops)
    assert overall.set_index("opcode").loc["FULLY_CONNECTED", "count"] == fc

    per = op_histogram(model, per_subgraph=True)
    assert set(per["subgraph"]) == {0, 1, 2}
    emb = per[per["subgraph"] == 0].set_index("opcode")["count"].to_dict()
    assert emb == {"GATHER": 1, "MUL": 1}
    assert per.groupby("subgraph")["share"].sum().tolist() == pytest.approx([1.0, 1.0, 1.0])
    # A subgraph on its own gives the same counts as its slice of the model.
    alone = op_histogram(model.subgraphs[2]).set_index("opcode")["count"].to_dict()
    assert alone == per[per["subgraph"] == 2].set_index("opcode")["count"].to_dict()


def test_parameter_bytes_count_shared_buffers_once() -> None:
    mb = ModelBuilder()
    a = mb.subgraph("a")
    w = a.const("w", (8, 4), "int8", "channel")  # 32 bytes, per-channel
    a.const("b", (4,), "float32", None)  # 16 bytes
    a.const("s", (4, 4), "int8", "tensor")  # 16 bytes, per-tensor
    a.const("w_again", (8, 4), "int8", "channel", buffer=a.tensors[w].buffer)  # shared
    other = mb.subgraph("b")
    other.const("w_elsewhere", (8, 4), "int8", "channel", buffer=a.tensors[w].buffer)
    other.const("h", (2, 8), "int4", None)  # 8 bytes
    model = mb.build()

    table = parameter_table(model)
    assert len(table) == 4 and table["bytes"].sum() == 32 + 16 + 16 + 8
    by_dtype = parameter_bytes(model, "dtype").set_index("dtype")["bytes"].to_dict()
    assert by_dtype == {"int8": 48, "float32": 16, "int4": 8}
    by_quant = parameter_bytes(model, "quantization").set_index("quantization")["bytes"].to_dict()
    assert by_quant == {"per-channel": 32, "per-tensor": 16, "none": 24}
    both = parameter_bytes(model, ["dtype", "quantization"])
    assert both["bytes"].sum() == 72 and both["share"].sum() == pytest.approx(1.0)
    # Per subgraph, the shared buffer counts in each subgraph that holds it.
    assert parameter_bytes(model.subgraphs[1], "dtype")["bytes"].sum() == 32 + 8


def test_tied_weights_count_once_in_the_whole_model() -> None:
    tied = parameter_table(gemma3n_like(tied=True).model)["bytes"].sum()
    untied = parameter_table(gemma3n_like(tied=False).model)["bytes"].sum()
    assert untied - tied == 1024 * 32  # the int8 [vocab, d] head stored a second time


def test_layer_groups_and_table() -> None:
    planted = gemma3n_like()
    sg = planted.model.subgraphs[planted.decode]
    groups = layer_groups(sg)
    assert groups.layers == (0, 1, 2, 3)
    for layer, ops in planted.mlp_ops.items():
        assert {groups.op_layer[op] for op in ops} == {layer}
    # Ops before the first layer (AltUp stream set-up) and the head belong to no layer.
    assert groups.op_layer[planted.lm_head[1]] is None
    table = layer_table(sg, groups)
    assert list(table["layer"]) == [0, 1, 2, 3]
    assert table["ops"].sum() == sum(x is not None for x in groups.op_layer)
    assert table["ops"].nunique() == 1  # identical op counts, different widths
    widths = dict(zip(table["layer"], table["param_bytes"], strict=True))
    assert widths[2] - widths[0] == 3 * 32 * (96 - 64)  # int8 gate + up + down grew by 32 columns
    assert "FULLY_CONNECTED×" in table.loc[0, "op_types"]


def test_unnamed_tensors_take_the_layer_of_their_producer_or_readers() -> None:
    mb = ModelBuilder()
    sg = mb.subgraph()
    x = sg.input("x", (1, 8))
    shared = sg.const("shared_scale", (8,), "float32", None)
    own = sg.const("w", (8, 8))
    h = sg.tensor("Identity", (1, 8))
    sg.op("FULLY_CONNECTED", [x, own, -1], [h])
    y = sg.binary("MUL", h, shared, "layer_0/scaled")
    z = sg.binary("MUL", y, shared, "layer_1/scaled")
    built = mb.build().subgraphs[0]
    groups = layer_groups(built)
    # The FC has neither a named output nor a named weight: it stays outside any layer.
    assert groups.op_layer == (None, 0, 1)
    assert groups.tensor_layer[own] is None  # read only by an op outside the layers
    assert groups.tensor_layer[shared] is None  # read by two layers
    assert groups.tensor_layer[h] is None and groups.tensor_layer[z] == 1
    renamed = ModelBuilder()
    r = renamed.subgraph()
    x = r.input("x", (1, 8))
    w = r.const("layer_5/w", (8, 8))
    out = r.tensor("Identity", (1, 8))
    r.op("FULLY_CONNECTED", [x, w, -1], [out])
    only = renamed.build().subgraphs[0]
    # An op whose outputs carry no layer takes the layer of its named constant inputs, and an
    # unnamed activation the layer of its producer.
    assert layer_groups(only).op_layer == (5,)
    assert layer_groups(only).tensor_layer[out] == 5
    assert GraphIndex.build(only).consumers[w] == (0,)


def test_repeated_blocks_group_identical_layers_and_show_the_difference() -> None:
    planted = gemma3n_like(widths=(64, 64, 96, 64))
    sg = planted.model.subgraphs[planted.decode]
    blocks = repeated_blocks(sg)
    assert [g.layers for g in blocks.groups] == [(0, 1, 3), (2,)]
    assert not blocks.uniform
    diff = blocks.differences
    assert set(diff["layer"]) == {2} and set(diff["reference_layer"]) == {0}
    assert sorted(diff["op"]) == sorted(planted.mlp_ops[2])  # gate, up, down and nothing else
    assert set(diff["this"]) == {"FULLY_CONNECTED[96x32]", "FULLY_CONNECTED[32x96]"}

    uniform = repeated_blocks(plain_transformer().model.subgraphs[0])
    assert uniform.uniform and uniform.groups[0].layers == (0, 1, 2, 3)
    assert uniform.differences.empty


def test_repeated_blocks_align_an_inserted_op() -> None:
    mb = ModelBuilder()
    sg = mb.subgraph()
    x = sg.input("x", (1, 8))
    for i in range(3):
        h = sg.unary("RELU", x, f"layer_{i}/relu")
        if i == 1:
            h = sg.unary("TANH", h, f"layer_{i}/extra")
        x, _ = sg.fc(h, 8, f"layer_{i}/fc")
    blocks = repeated_blocks(mb.build().subgraphs[0])
    assert [g.layers for g in blocks.groups] == [(0, 2), (1,)]
    assert blocks.differences[["this", "reference"]].values.tolist() == [["TANH", ""]]


# -- neighbourhoods ------------------------------------------------------------------------------
# chain(6): tensors t0=0, c0=1, t1=2, c1=3, t2=4, c2=5, t3=6, c3=7, t4=8 ...; op i reads
# (t_i, c_i) and writes t_{i+1}.


def test_neighbourhood_hops_are_exact_on_a_chain() -> None:
    sg = chain(6)

    def ids(graph) -> set[str]:
        return {n.id for n in graph.nodes}

    assert ids(neighbourhood(sg, op=2, hops=0)) == {"op:2"}
    assert ids(neighbourhood(sg, op=2, hops=1)) == {"op:2", "t:4", "t:5", "t:6"}
    assert ids(neighbourhood(sg, op=2, hops=2)) == {"op:2", "t:4", "t:5", "t:6", "op:1", "op:3"}
    three = neighbourhood(sg, op=2, hops=3)
    assert ids(three) == {"op:2", "t:4", "t:5", "t:6", "op:1", "op:3", "t:2", "t:3", "t:7", "t:8"}
    assert {n.id: n.distance for n in three.nodes}["t:8"] == 3
    assert not three.truncated and three.note == "" and three.center == "op:2"
    # Edges follow the data flow and only join nodes that are shown.
    assert set(neighbourhood(sg, op=2, hops=2).edges) == {
        ("op:1", "t:4"),
        ("t:4", "op:2"),
        ("t:5", "op:2"),
        ("op:2", "t:6"),
        ("t:6", "op:3"),
    }

    from_tensor = neighbourhood(sg, tensor=6, hops=1)
    assert ids(from_tensor) == {"t:6", "op:2", "op:3"}
    assert ids(neighbourhood(sg, tensor=6, hops=3, direction="up")) == {
        "t:6",
        "op:2",
        "t:4",
        "t:5",
        "op:1",
    }
    assert ids(neighbourhood(sg, tensor=6, hops=2, direction="down")) == {"t:6", "op:3", "t:8"}


def test_neighbourhood_truncates_with_a_note() -> None:
    sg = chain(20)
    full = neighbourhood(sg, op=10, hops=10)
    assert not full.truncated
    cut = neighbourhood(sg, op=10, hops=10, max_nodes=7)
    assert cut.truncated and len(cut.nodes) == 7 and "max_nodes" in cut.note
    assert all(a in {n.id for n in cut.nodes} for edge in cut.edges for a in edge)
    assert max(n.distance for n in cut.nodes) <= min(
        n.distance for n in full.nodes if n.id not in {m.id for m in cut.nodes}
    )
    with pytest.raises(ValueError, match="exactly one"):
        neighbourhood(sg)
    with pytest.raises(ValueError, match="not in subgraph"):
        neighbourhood(sg, op=99)


def test_layer_graph_holds_exactly_the_layer_ops() -> None:
    planted = gemma3n_like()
    sg = planted.model.subgraphs[planted.decode]
    graph = layer_graph(sg, 1)
    assert set(graph.ops) == set(layer_groups(sg).ops_in(1))
    assert set(planted.mlp_ops[1]) <= set(graph.ops) and not graph.truncated
    cut = layer_graph(sg, 1, max_nodes=30)
    assert cut.truncated and len(cut.nodes) <= 30 and "first" in cut.note
    with pytest.raises(ValueError, match="no ops of layer 9"):
        layer_graph(sg, 9)


def test_to_dot_styles_ops_tensors_constants_and_center() -> None:
    sg = chain(3)
    dot = to_dot(neighbourhood(sg, op=1, hops=2))
    assert dot.startswith("digraph G {") and dot.rstrip().endswith("}")
    assert '"op:1" [label="ADD #1", shape=box' in dot and "penwidth=3" in dot
    assert '"t:3" [label="c1\\n[4] float32", shape=ellipse, style="dashed,filled"' in dot
    assert '"t:2" -> "op:1";' in dot and '"op:1" -> "t:4";' in dot
    assert dot.count("penwidth=3") == 1
    # Quotes and backslashes in names cannot break the DOT text.
    mb = ModelBuilder()
    b = mb.subgraph()
    x = b.input('we"ird\\name', (2,))
    b.unary("RELU", x, "out")
    assert 'we\\"ird\\\\name' in to_dot(neighbourhood(mb.build().subgraphs[0], op=0))
    assert short_name("a;b") == "a" and len(short_name("x" * 100)) == 40


def test_analysis_and_findings_stay_fast_on_a_10k_op_graph() -> None:
    model = plain_transformer(layers=340).model
    sg = model.subgraphs[0]
    assert len(sg.ops) > 9000
    start = time.perf_counter()
    op_histogram(model)
    parameter_bytes(model, ["dtype", "quantization"])
    layer_table(sg)
    repeated_blocks(sg)
    find_all(model)
    neighbourhood(sg, tensor=sg.inputs[1], hops=4)
    assert time.perf_counter() - start < 5.0
