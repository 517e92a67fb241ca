"""The config read back from the graph Google's converter writes equals the config it converted
(one test per family), and what the graph does not show is reported unknown, never guessed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.tflite.bundles import open_file
from engine.tflite.findings import digest_from_readers, find_all
from engine.tflite.graph import TFLiteError
from engine.tflite.recovered import (
    FIELDS,
    RecoveredConfig,
    load_hf_config,
    recover_config,
    rope_base,
    source_values,
)
from tests.converted_support import converted

# Fields the graph does not show, per family (none: every field is read off the graph when the
# reader may read the window and RoPE constants and compare the head's bytes).
NOT_VISIBLE: dict[str, set[str]] = {
    "smollm2-135m-fp32": set(),
    "smollm2-135m-int8": set(),
    "gemma3-tiny": set(),
    "gemma3n-tiny": set(),
    "qwen2-tiny": set(),
    "qwen2-tiny-4layers": set(),
}
# Fields that need tensor values: unknown when `recover_config` gets no reader.
NEEDS_VALUES = {"sliding_window", "rope_theta"}


def _read(name: str, *, with_values: bool = True) -> tuple[RecoveredConfig, dict]:
    sample = converted(name)
    with open_file(sample.tflite).open(None) as reader:
        info = reader.info()
        digest = digest_from_readers({info.name: reader})
        values = reader.tensor_array if with_values else None
        rc = recover_config(info, digest=digest, values=values)
    return rc, load_hf_config(sample.hf_folder())


@pytest.mark.parametrize("name", sorted(NOT_VISIBLE))
def test_recovered_config_equals_the_source_config(name: str) -> None:
    rc, source = _read(name)
    assert rc.signature == "decode"  # the signature with the logits: no layer is dead there
    table = rc.compare_with(source)
    unknown = set(table.loc[table["status"] == "unknown", "field"])
    assert unknown == NOT_VISIBLE[name], rc.to_table()
    differ = table[(table["status"] != "unknown") & (table["equal"] != True)]  # noqa: E712
    assert differ.empty, differ.to_string()
    for field, r in rc.fields.items():
        if r.status == "found":
            assert r.evidence_ops or r.evidence_tensors, field
            assert r.how, field


def test_each_family_shows_its_own_features() -> None:
    g3n, _ = _read("gemma3n-tiny")
    assert g3n["altup_num_inputs"].value == 4
    assert g3n["laurel_rank"].value == 8
    assert g3n["hidden_size_per_layer_input"].value == 16
    assert g3n["intermediate_size"].value == [192, 128, 192, 96]
    # the head is the embedding with the soft-capping 1/30 folded in: tied, by value
    assert g3n["tie_word_embeddings"].value is True
    assert "×" in g3n["tie_word_embeddings"].how
    g3, _ = _read("gemma3-tiny")
    assert g3["layer_types"].value == ["sliding_attention"] * 5 + ["full_attention"]
    assert g3["sliding_window"].value == 32
    assert g3["rope_theta"].value == {"sliding_attention": 1e4, "full_attention": 1e6}
    qwen, _ = _read("qwen2-tiny")
    assert qwen["tie_word_embeddings"].value is False
    assert qwen["sliding_window"].status == "absent"
    assert qwen["altup_num_inputs"].status == "absent"


def test_without_a_reader_the_constants_are_unknown_not_guessed() -> None:
    rc, _ = _read("gemma3-tiny", with_values=False)
    unknown = {f for f, r in rc.fields.items() if r.status == "unknown"}
    assert unknown == NEEDS_VALUES
    assert all(rc[f].value is None and rc[f].how for f in unknown)
    shown = rc.to_table()
    assert set(shown.loc[shown["status"] == "unknown", "value"]) == {"unknown"}
    # the layer pattern needs no values: it is read from how each mask is built
    assert rc["layer_types"].status == "found"


def test_prefill_findings_say_the_last_layer_is_dead_code_there() -> None:
    sample = converted("qwen2-tiny")
    with open_file(sample.tflite).open(None) as reader:
        info = reader.info()
    prefill = next(s.subgraph for s in info.signatures if s.key.startswith("prefill"))
    decode = next(s.subgraph for s in info.signatures if s.key == "decode")
    ffn = {f.subgraph: f for f in find_all(info, kinds=["ffn_widths"])}
    assert ffn[decode].title == "FFN width 160 in all 3 layers"
    assert "2 MLPs in prefill_32 (3 layers; the last layer's MLP is dead code" in ffn[prefill].title
    assert ffn[prefill].data["dead_layers"] == 1
    # read from prefill, the config says what it can, and no layer count from MLPs
    rc = recover_config(info, subgraph=prefill)
    assert rc["num_hidden_layers"].value == 3  # one KV cache per layer, dead or not
    assert rc["intermediate_size"].status == "unknown"


def test_gemma3_attention_finding_names_local_and_global_layers() -> None:
    sample = converted("gemma3-tiny")
    with open_file(sample.tflite).open(None) as reader:
        info = reader.info()
    [found] = [f for f in find_all(info, kinds=["attention_pattern"])]
    assert found.title == "Local and global attention: 5 local : 1 global"
    assert found.data["pattern"] == "LLLLLG" and found.data["numbered_by"] == "KV cache"


def test_rope_base_reads_a_geometric_table_only() -> None:
    for base in (1e4, 1e5, 1e6):
        inv = (base ** (-np.arange(0, 64, 2) / 64)).astype(np.float32)
        assert rope_base(inv) == base
    scaled = (1e4 ** (-np.arange(0, 64, 2) / 64)).astype(np.float32)
    scaled[20:] /= 8  # a llama-3 style rescaled tail is not one base
    assert rope_base(scaled) is None
    assert rope_base(np.array([0.5, 0.25])) is None


def test_source_values_follow_the_hf_conventions() -> None:
    llama = {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "vocab_size": 10,
        "rope_theta": 5e5,
    }
    got = source_values(llama)
    assert got["head_dim"] == 16 and got["num_key_value_heads"] == 4
    assert got["intermediate_size"] == [128, 128]
    assert got["layer_types"] == ["full_attention"] * 2 and got["sliding_window"] is None
    assert got["tie_word_embeddings"] is True and got["rope_theta"] == 5e5
    assert got["altup_num_inputs"] is None


def test_a_graph_without_kv_caches_reports_unknown_attention(tmp_path) -> None:
    from engine.tflite.synthetic import GEMMA3N_LIKE, write_gemma3n_like

    path = write_gemma3n_like(tmp_path / "g.tflite")
    with open_file(path).open(None) as reader:
        rc = recover_config(reader.info(), values=reader.tensor_array)
    assert set(rc.fields) == set(FIELDS)
    for field in ("num_hidden_layers", "num_attention_heads", "head_dim", "layer_types"):
        assert rc[field].status == "unknown" and rc[field].value is None
    # what the detectors see needs no caches
    assert rc["altup_num_inputs"].value == GEMMA3N_LIKE["altup_streams"]
    assert rc["laurel_rank"].value == GEMMA3N_LIKE["laurel_rank"]
    assert rc["intermediate_size"].value == list(GEMMA3N_LIKE["ffn_widths"])


def test_load_hf_config_refuses_a_folder_without_one(tmp_path) -> None:
    with pytest.raises(TFLiteError, match="no config.json"):
        load_hf_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"num_hidden_layers": 2}}))
    assert load_hf_config(tmp_path) == {"num_hidden_layers": 2}
