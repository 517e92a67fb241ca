"""Architecture findings against planted ground truth: found where planted, silent where not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.tflite.diff import diff_graphs
from engine.tflite.findings import DETECTORS, Finding, find_all, findings_table, matmuls
from tests.tflite_graphs import ModelBuilder, gemma3n_like, plain_transformer
from tests.tflite_support import MEDIAPIPE, mediapipe_names, need_mediapipe

KINDS = set(DETECTORS)


def _by_kind(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.kind, []).append(f)
    return out


def _only(findings: list[Finding], kind: str, subgraph: int | None = None) -> Finding:
    hits = [f for f in findings if f.kind == kind and (subgraph is None or f.subgraph == subgraph)]
    assert len(hits) == 1, [f.title for f in findings if f.kind == kind]
    return hits[0]


@pytest.fixture(scope="module")
def planted():
    return gemma3n_like()


@pytest.fixture(scope="module")
def found(planted):
    return find_all(planted.model)


def test_every_finding_carries_evidence_that_exists(planted, found) -> None:
    assert {f.kind for f in found} == KINDS
    for f in found:
        sg = planted.model.subgraphs[f.subgraph]
        assert f.confidence in ("high", "medium", "low")
        assert f.evidence_ops or f.evidence_tensors, f.kind
        assert all(0 <= op < len(sg.ops) for op in f.evidence_ops)
        assert all(0 <= t < len(sg.tensors) for t in f.evidence_tensors)
        assert list(f.evidence_ops) == sorted(set(f.evidence_ops))
    table = findings_table(found)
    assert len(table) == len(found) and set(table["kind"]) == KINDS


def test_matformer_widths_are_exactly_the_planted_ones(planted, found) -> None:
    f = _only(found, "ffn_widths")
    assert f.subgraph == planted.decode and f.confidence == "high"
    assert f.data["widths"] == {0: 64, 1: 64, 2: 96, 3: 96}
    assert f.data["differ"] is True and f.data["d_model"] == 32
    assert "MatFormer" in f.title
    planted_ops = {op for ops in planted.mlp_ops.values() for op in ops}
    assert set(f.evidence_ops) == planted_ops
    sg = planted.model.subgraphs[f.subgraph]
    assert {sg.ops[op].opcode for op in f.evidence_ops} == {"FULLY_CONNECTED"}
    weights = {sg.ops[op].inputs[1] for op in planted_ops}
    assert set(f.evidence_tensors) == weights


def test_altup_streams_predict_and_correct(planted, found) -> None:
    f = _only(found, "altup")
    assert f.confidence == "high" and f.data["streams"] == 4 and f.data["d_model"] == 32
    assert f.data["layers"] == [0, 1, 2, 3]
    assert "predicted and corrected" in f.title
    assert set(f.evidence_ops) == {op for ops in planted.altup_ops.values() for op in ops}
    sg = planted.model.subgraphs[f.subgraph]
    assert all(
        sg.tensors[t].shape[0] == 4 and sg.tensors[t].shape[-1] == 32 for t in f.evidence_tensors
    )


def test_laurel_pairs_are_the_planted_ones(planted, found) -> None:
    f = _only(found, "laurel")
    assert f.confidence == "high" and f.data["ranks"] == [4] and f.data["d_model"] == [32]
    assert f.data["pairs"] == [tuple(ops) for ops in planted.laurel_ops.values()]
    assert f.data["layers"] == [0, 1, 2, 3]


def test_per_layer_embeddings_in_table_and_in_decoder(planted, found) -> None:
    table = _only(found, "per_layer_embeddings", subgraph=1)
    assert table.confidence == "high"
    assert table.data["tables"][0] | {"op": None} == {
        "op": None,
        "tensor": 1,
        "vocab": 1024,
        "layers": 4,
        "dim": 8,
    }
    assert planted.ple_gather[1] in table.evidence_ops
    decoder = _only(found, "per_layer_embeddings", subgraph=planted.decode)
    assert decoder.data["inputs"][0]["layers"] == [0, 1, 2, 3]
    assert decoder.data["inputs"][0]["dim"] == 8


def test_tied_embedding_across_subgraphs(planted, found) -> None:
    f = _only(found, "tied_embedding")
    assert f.confidence == "high" and f.subgraph == planted.decode
    assert f.data["head"]["op"] == planted.lm_head[1] and f.evidence_ops == (planted.lm_head[1],)
    assert (f.data["embedding"]["subgraph"], f.data["embedding"]["op"]) == planted.embedding_gather
    assert f.data["vocab"] == 1024 and f.data["d_model"] == 32


def test_local_global_pattern(planted, found) -> None:
    f = _only(found, "attention_pattern")
    assert f.confidence == "high"
    assert f.data["pattern"] == "LLLG" and f.data["layers"] == {0: "L", 1: "L", 2: "L", 3: "G"}
    assert f.data["key_lengths"] == {"L": 8, "G": 32}
    assert set(f.evidence_ops) == set(planted.softmax_ops.values())
    assert "3 local : 1 global" in f.title


def test_local_global_repeating_pattern_is_named() -> None:
    model = gemma3n_like(widths=(64,) * 10, attention="LLLLG").model
    f = _only(find_all(model, kinds=["attention_pattern"]), "attention_pattern")
    assert f.data["pattern"] == "LLLLGLLLLG" and f.data["period"] == 5
    assert "8 local : 2 global, repeating every 5 layers" in f.title


def test_structure_alone_gives_medium_confidence() -> None:
    planted = gemma3n_like(names=False)
    found = find_all(planted.model)
    by_kind = _by_kind(found)
    assert {k: {f.confidence for f in v} for k, v in by_kind.items()} == {
        "ffn_widths": {"medium"},
        "altup": {"medium"},
        "laurel": {"medium"},
        "per_layer_embeddings": {"medium"},
        "tied_embedding": {"high"},  # a shared buffer is byte identity, names or not
        "attention_pattern": {"medium"},  # fewer keys = the sliding window
    }
    assert by_kind["ffn_widths"][0].data["widths"] == {0: 64, 1: 64, 2: 96, 3: 96}
    assert by_kind["attention_pattern"][0].data["pattern"] == "LLLG"


def test_no_false_positives_on_a_plain_transformer() -> None:
    found = find_all(plain_transformer().model)
    assert [f.kind for f in found] == ["ffn_widths"]
    f = found[0]
    assert f.data["widths"] == {0: 128, 1: 128, 2: 128, 3: 128} and f.data["differ"] is False
    assert "MatFormer" not in f.title


def test_no_false_positives_when_the_techniques_are_absent() -> None:
    planted = gemma3n_like(altup=False, laurel=False, ple=False, tied=False, attention="G")
    kinds = {f.kind for f in find_all(planted.model)}
    assert kinds == {"ffn_widths"}


def test_per_layer_tables_stacked_into_one_tensor() -> None:
    mb = ModelBuilder()
    sg = mb.subgraph()
    ids = sg.input("ids", (1, 4), "int32")
    rows = []
    for i in range(3):
        table = sg.const(f"table_{i}", (1024, 8))
        rows.append(sg.tensor(f"rows_{i}", (1, 4, 8)))
        sg.op("GATHER", [table, ids], [rows[-1]], axis=0)
    sg.op("PACK", rows, [sg.tensor("stacked", (1, 4, 3, 8))], axis=2)
    f = _only(find_all(mb.build(), kinds=["per_layer_embeddings"]), "per_layer_embeddings")
    assert f.confidence == "medium" and f.evidence_ops == (0, 1, 2, 3)
    assert (f.data["tables"][0]["layers"], f.data["tables"][0]["dim"]) == (3, 8)


def test_a_lookup_at_constant_indices_is_not_an_embedding() -> None:
    mb = ModelBuilder()
    sg = mb.subgraph()
    table = sg.const("anchors", (1024, 32))
    picked = sg.tensor("picked", (4, 32))
    sg.op("GATHER", [table, sg.const("which", (4,), "int32", None)], [picked], axis=0)
    sg.unary("RESHAPE", picked, "pieces", (4, 4, 8))
    assert find_all(mb.build(), kinds=["per_layer_embeddings", "tied_embedding"]) == []


def test_tied_only_when_the_buffer_is_really_shared() -> None:
    assert not [
        f for f in find_all(plain_transformer(tied=False).model) if f.kind == "tied_embedding"
    ]
    tied = _only(find_all(plain_transformer(tied=True).model), "tied_embedding")
    assert len(tied.evidence_ops) == 2  # gather and head in one subgraph
    untied = gemma3n_like(tied=False).model
    assert "tied_embedding" not in {f.kind for f in find_all(untied)}

    # Two buffers with the same bytes count as tied only when a digest says so.
    def same_bytes(model, sg: int, t: int) -> str:
        return "x" if model.subgraphs[sg].tensors[t].shape == (1024, 32) else str(t)

    def differ(model, sg: int, t: int) -> str:
        return f"{sg}:{t}"

    assert "tied_embedding" in {f.kind for f in find_all(untied, digest=same_bytes)}
    assert "tied_embedding" not in {f.kind for f in find_all(untied, digest=differ)}


def test_names_alone_give_low_confidence() -> None:
    model = plain_transformer(prefix="transformer/layer_{i}/laurel/altup/per_layer").model
    found = _by_kind(find_all(model))
    for kind in ("laurel", "altup", "per_layer_embeddings"):
        assert [f.confidence for f in found[kind]] == ["low"], kind
        assert not found[kind][0].evidence_ops
    assert [f.confidence for f in found["ffn_widths"]] == ["high"]


def test_local_global_by_names_alone_is_low() -> None:
    mb = ModelBuilder()
    sg = mb.subgraph()
    x = sg.input("x", (1, 8))
    for i in range(4):
        kind = "local" if i < 3 else "global"
        x = sg.unary("RELU", x, f"layer_{i}/{kind}_attention/out")
    f = _only(find_all(mb.build(), kinds=["attention_pattern"]), "attention_pattern")
    assert f.confidence == "low" and f.data["pattern"] == "LLLG"


def test_conflicting_names_and_key_lengths_label_nothing() -> None:
    model = gemma3n_like(local_keys=64, global_keys=8).model  # "local" masks see more keys
    f = _only(find_all(model, kinds=["attention_pattern"]), "attention_pattern")
    assert f.confidence == "medium" and f.data["pattern"] == "AAAB"


def test_mlps_without_layer_names_are_numbered_in_order() -> None:
    planted = plain_transformer(prefix="block")  # no layer index anywhere
    f = _only(find_all(planted.model, kinds=["ffn_widths"]), "ffn_widths")
    assert f.data["widths"] == {0: 128, 1: 128, 2: 128, 3: 128}
    assert "order" in f.detail


def test_matmuls_read_weights_behind_dequantize_and_batch_matmul_adjoint() -> None:
    mb = ModelBuilder()
    sg = mb.subgraph()
    x = sg.input("x", (1, 4, 16))
    w16 = sg.const("w16", (32, 16), "float16", None)
    w = sg.tensor("w_dequantized", (32, 16))
    sg.op("DEQUANTIZE", [w16], [w])
    y = sg.tensor("y", (1, 4, 32))
    sg.op("FULLY_CONNECTED", [x, w, -1], [y])
    rhs = sg.const("rhs", (8, 32), "int8")
    z = sg.tensor("z", (1, 4, 8))
    sg.op("BATCH_MATMUL", [y, rhs], [z], adj_y=True)
    k = sg.tensor("k", (1, 8, 4))
    sg.op("BATCH_MATMUL", [z, k], [sg.tensor("scores", (1, 4, 4))])  # activation × activation
    got = [(m.op, m.weight, m.d_in, m.d_out) for m in matmuls(mb.build().subgraphs[0])]
    assert got == [(1, w16, 16, 32), (2, rhs, 32, 8)]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown finding kind"):
        find_all(plain_transformer().model, kinds=["moe"])


def test_findings_are_plain_frozen_data(found) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        found[0].title = "x"  # type: ignore[misc]


# -- real files: the reader's synthetic Gemma-3n-shaped model and bundle, MediaPipe models --------


def _read(path: Path):
    from engine.tflite.reader import open_tflite

    with open_tflite(path) as reader:
        return reader.info()


def test_findings_on_the_synthetic_gemma3n_file(tmp_path: Path) -> None:
    from engine.tflite import synthetic

    truth = synthetic.GEMMA3N_LIKE
    model = _read(synthetic.write_gemma3n_like(tmp_path / "gemma3n_like.tflite"))
    found = find_all(model)
    assert {f.kind for f in found} == KINDS
    assert {f.confidence for f in found} == {"high"}  # its names and structure agree everywhere

    widths = _only(found, "ffn_widths").data["widths"]
    assert widths == dict(enumerate(truth["ffn_widths"]))
    altup = _only(found, "altup").data
    assert altup["streams"] == truth["altup_streams"] and altup["d_model"] == truth["d_model"]
    assert altup["layers"] == list(range(truth["num_layers"]))
    assert _only(found, "laurel").data["ranks"] == [truth["laurel_rank"]]
    ple = _only(found, "per_layer_embeddings").data
    assert ple["tables"][0]["layers"] == truth["num_layers"]
    assert ple["tables"][0]["dim"] == truth["per_layer_dim"]
    sg = model.subgraphs[0]
    tied = _only(found, "tied_embedding")
    assert sg.tensors[tied.data["head"]["tensor"]].name == truth["lm_head"]
    assert sg.tensors[tied.data["embedding"]["tensor"]].name == truth["embedding"]
    pattern = _only(found, "attention_pattern").data["layers"]
    assert [x for x, k in pattern.items() if k == "L"] == list(truth["local_layers"])
    assert [x for x, k in pattern.items() if k == "G"] == list(truth["global_layers"])


def test_tied_embedding_across_bundle_sections(tmp_path: Path) -> None:
    from engine.tflite import synthetic
    from engine.tflite.bundles import open_file
    from engine.tflite.findings import digest_from_readers, find_across

    bundle = open_file(synthetic.write_task_bundle(tmp_path / "gemma3n_like.task"))
    readers = {}
    try:
        for section in bundle.models:
            reader = bundle.open(section.name)
            readers[reader.info().name] = reader
        models = [r.info() for r in readers.values()]
        without_digest = find_across(models)
        found = find_across(models, digest=digest_from_readers(readers))
    finally:
        for reader in readers.values():
            reader.close()
    decoder = next(name for name in found if name.endswith("TF_LITE_PREFILL_DECODE"))
    embedder = next(name for name in found if name.endswith(":TF_LITE_EMBEDDER"))
    across = [
        f
        for f in found[decoder]
        if f.kind == "tied_embedding" and f.data["embedding"].get("model") == embedder
    ]
    assert len(across) == 1 and across[0].confidence == "high"
    # Without bytes to compare, two sections are never called tied.
    assert not [
        f
        for f in without_digest[decoder]
        if f.kind == "tied_embedding" and "model" in f.data["embedding"]
    ]


@pytest.mark.parametrize("name", mediapipe_names())
def test_no_language_model_findings_on_vision_models(name: str) -> None:
    need_mediapipe()
    model = _read(MEDIAPIPE / name)
    found = find_all(model)
    assert not {f.kind for f in found} & {
        "altup",
        "laurel",
        "per_layer_embeddings",
        "tied_embedding",
        "attention_pattern",
    }
    for f in found:
        sg = model.subgraphs[f.subgraph]
        assert all(0 <= op < len(sg.ops) for op in f.evidence_ops)
    assert diff_graphs(model, model).identical
