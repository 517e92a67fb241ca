"""Graph diff: empty against itself, exactly the planted changes otherwise."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from engine.tflite.diff import diff_graphs
from engine.tflite.graph import OpInfo, Quantization, TensorInfo
from tests.tflite_graphs import gemma3n_like, insert_after, plain_transformer, replace_tensor


def _add_side_op(sg, reads: int):
    """A copy of `sg` with one more op (RELU of tensor `reads`) writing a new subgraph output."""
    out = TensorInfo(len(sg.tensors), "extra/relu", sg.tensors[reads].shape, None, "float32", 0, 0)
    op = OpInfo(len(sg.ops), "RELU", False, 1, (reads,), (out.index,))
    return dataclasses.replace(
        sg, tensors=(*sg.tensors, out), ops=(*sg.ops, op), outputs=(*sg.outputs, out.index)
    )


def _unnamed(sg):
    return dataclasses.replace(
        sg, tensors=tuple(dataclasses.replace(t, name="") for t in sg.tensors)
    )


def test_a_model_against_itself_is_empty() -> None:
    model = gemma3n_like().model
    d = diff_graphs(model, model)
    assert d.identical
    assert d.summary["tensors"] == {
        "added": 0,
        "removed": 0,
        "changed": 0,
        "same": sum(len(sg.tensors) for sg in model.subgraphs),
    }
    assert d.summary["ops"]["same"] == sum(len(sg.ops) for sg in model.subgraphs)
    assert d.changed_tensors().empty and d.changed_ops().empty
    assert list(d.subgraphs["status"]) == ["same"] * 3


def test_one_shape_change_is_exactly_one_changed_tensor() -> None:
    model = plain_transformer().model
    sg = model.subgraphs[0]
    target = next(
        t.index for t in sg.tensors if t.name == "transformer/layer_2/mlp/up_proj/weights"
    )
    b = dataclasses.replace(model, subgraphs=(replace_tensor(sg, target, shape=(129, 32)),))
    d = diff_graphs(model, b)
    changed = d.changed_tensors()
    assert len(changed) == 1
    row = changed.iloc[0]
    assert (row.index_a, row.index_b, row.status, row.changes) == (
        target,
        target,
        "changed",
        "shape",
    )
    assert row.detail == "shape [128, 32] → [129, 32]"
    assert d.changed_ops().empty
    assert d.summary["subgraphs"]["changed"] == 1


def test_one_added_op_is_exactly_one_added_op_and_its_tensor() -> None:
    sg = plain_transformer().model.subgraphs[0]
    reads = next(t.index for t in sg.tensors if t.name == "transformer/layer_1/mlp/hidden")
    b = _add_side_op(sg, reads)
    d = diff_graphs(sg, b)
    assert d.summary["ops"] | {"same": 0} == {"added": 1, "removed": 0, "changed": 0, "same": 0}
    assert d.summary["tensors"] | {"same": 0} == {"added": 1, "removed": 0, "changed": 0, "same": 0}
    op = d.changed_ops().iloc[0]
    assert (op.status, op.opcode_b, op.index_b) == ("added", "RELU", len(sg.ops))
    assert d.changed_tensors().iloc[0].name_b == "extra/relu"
    # The other way round it is one removal each.
    back = diff_graphs(b, sg)
    assert back.summary["ops"]["removed"] == 1 and back.summary["tensors"]["removed"] == 1


def test_one_renamed_tensor_is_one_changed_name() -> None:
    sg = plain_transformer().model.subgraphs[0]
    target = next(t.index for t in sg.tensors if t.name == "transformer/layer_1/attn/scores")
    b = replace_tensor(sg, target, name="renamed/scores")
    d = diff_graphs(sg, b)
    changed = d.changed_tensors()
    assert len(changed) == 1
    row = changed.iloc[0]
    assert (row.index_a, row.index_b, row.changes) == (target, target, "name")
    assert row.detail == "name 'transformer/layer_1/attn/scores' → 'renamed/scores'"
    assert d.changed_ops().empty  # the producer and consumer are matched by structure


def test_dtype_and_quantization_changes_are_reported() -> None:
    sg = plain_transformer().model.subgraphs[0]
    w = next(t.index for t in sg.tensors if t.name == "transformer/layer_0/mlp/down_proj/weights")
    per_tensor = Quantization(scale=(0.5,), zero_point=(0,))
    b = replace_tensor(sg, w, dtype="int4", quantization=per_tensor)
    row = diff_graphs(sg, b).changed_tensors().iloc[0]
    assert row.changes == "dtype, quantization"
    assert "per-channel → per-tensor" in row.detail


@pytest.mark.parametrize("named", [True, False])
def test_an_inserted_op_rewires_its_consumer(named: bool) -> None:
    planted = plain_transformer()
    a = planted.model.subgraphs[0]
    if not named:
        a = dataclasses.replace(
            a, tensors=tuple(dataclasses.replace(t, name="") for t in a.tensors)
        )
    gate = planted.mlp_ops[1][0]
    b = insert_after(a, gate)  # gate → NEG → GELU
    d = diff_graphs(a, b)
    got = d.changed_ops()[["index_a", "index_b", "opcode_b", "status", "changes"]]
    assert got.values.tolist() == [
        [gate + 2, gate + 3, "GELU", "changed", "inputs"],
        [pd.NA, gate + 1, "NEG", "added", ""],
    ]
    assert d.summary["tensors"] == {"added": 1, "removed": 0, "changed": 0, "same": len(a.tensors)}


def test_unnamed_graphs_match_by_structure() -> None:
    sg = plain_transformer().model.subgraphs[0]
    a = _unnamed(sg)
    target = next(t.index for t in sg.tensors if t.name == "transformer/layer_3/mlp/gate_proj")
    b = replace_tensor(a, target, shape=(1, 4, 200))
    d = diff_graphs(a, b)
    assert d.summary["ops"] == {"added": 0, "removed": 0, "changed": 0, "same": len(sg.ops)}
    changed = d.changed_tensors()
    assert changed[["index_a", "changes"]].values.tolist() == [[target, "shape"]]


def test_whole_models_pair_subgraphs_by_name() -> None:
    full = gemma3n_like().model
    without_ple = dataclasses.replace(full, subgraphs=(full.subgraphs[0], full.subgraphs[2]))
    d = diff_graphs(full, without_ple)
    by_name = dict(zip(d.subgraphs["name_a"], d.subgraphs["status"], strict=True))
    assert by_name == {
        "TF_LITE_EMBEDDER": "same",
        "TF_LITE_PER_LAYER_EMBEDDER": "removed",
        "TF_LITE_PREFILL_DECODE": "same",
    }
    assert d.summary["ops"]["removed"] == len(full.subgraphs[1].ops)
    assert d.summary["tensors"]["removed"] == len(full.subgraphs[1].tensors)
    assert d.summary["ops"]["changed"] == 0 and d.summary["tensors"]["changed"] == 0
