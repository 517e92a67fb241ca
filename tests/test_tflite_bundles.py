"""engine.tflite bundles: .task zips and .litertlm containers, sections mapped in place."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.tflite import TFLiteError, bundles, open_file, open_tflite, synthetic
from engine.tflite.bundles import LITERTLM_BLOCK


@pytest.fixture(scope="module")
def parts() -> dict[str, bytes]:
    return synthetic.gemma3n_sections()


def data_offset(path: Path, member: str) -> int:
    """Where a stored member's bytes start, from its local file header (independent check)."""
    with zipfile.ZipFile(path) as zf:
        header = zf.getinfo(member).header_offset
    raw = path.read_bytes()
    assert raw[header : header + 4] == b"PK\x03\x04"
    name_len, extra_len = struct.unpack_from("<HH", raw, header + 26)
    return header + 30 + name_len + extra_len


def test_plain_model_is_one_section(tmp_path: Path) -> None:
    path = synthetic.write_mlp(tmp_path / "m.tflite")
    file = open_file(path)
    assert file.format == "tflite"
    (section,) = file.sections
    assert (section.kind, section.offset, section.size) == ("tflite", 0, path.stat().st_size)
    with file.open() as reader:
        assert reader.info().name == "m.tflite"


def test_task_sections_open_in_place(tmp_path: Path, parts: dict[str, bytes]) -> None:
    path = synthetic.write_task_bundle(tmp_path / "g.task", parts)
    file = open_file(path)
    assert file.format == "task"
    assert [(s.name, s.kind, s.compressed) for s in file.sections] == [
        ("TF_LITE_PREFILL_DECODE", "tflite", False),
        ("TF_LITE_EMBEDDER", "tflite", False),
        ("TF_LITE_PER_LAYER_EMBEDDER", "tflite", False),
        ("TOKENIZER_MODEL", "tokenizer", False),
        ("METADATA", "metadata", False),
    ]
    for section in file.models:
        assert section.offset == data_offset(path, section.name)
        assert section.size == len(parts[section.name])
        with file.open(section.name) as reader:
            assert reader.path == path  # mapped from the bundle itself, nothing extracted
            assert reader.offset == section.offset
            assert reader.info().name == f"g.task:{section.name}"
            alone = open_tflite(parts[section.name])
            assert reader.info().subgraphs == alone.info().subgraphs
            t = reader.info().subgraphs[0].tensors[1]
            np.testing.assert_array_equal(reader.tensor_array(0, 1), alone.tensor_array(0, 1))
            assert t.buffer_bytes > 0
    assert file.read_section("METADATA") == parts["METADATA"]
    with pytest.raises(TFLiteError, match="not a TFLite model"):
        file.open("TOKENIZER_MODEL")
    with pytest.raises(TFLiteError, match="no section 'nope'"):
        file.open("nope")


def test_the_bundle_embedder_holds_the_decoder_embedding(tmp_path: Path) -> None:
    file = open_file(synthetic.write_task_bundle(tmp_path / "g.task"))
    name = synthetic.GEMMA3N_LIKE["embedding"]
    with file.open("TF_LITE_EMBEDDER") as emb, file.open("TF_LITE_PREFILL_DECODE") as dec:
        assert bytes(emb.tensor_bytes(0, name)) == bytes(dec.tensor_bytes(0, name))


def test_deflated_members_small_read_in_memory_large_refused(
    tmp_path: Path, parts: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = synthetic.write_task_bundle(
        tmp_path / "d.task", parts, deflate=("TF_LITE_EMBEDDER", "METADATA")
    )
    file = open_file(path)
    section = file.section("TF_LITE_EMBEDDER")
    assert section.compressed and section.kind == "tflite"
    with file.open("TF_LITE_EMBEDDER") as reader:
        assert reader.path is None  # inflated into memory
        assert len(reader.info().subgraphs[0].tensors) == 3
    assert file.read_section("METADATA") == parts["METADATA"]
    monkeypatch.setattr(bundles, "MAX_DEFLATED_BYTES", 1000)
    with pytest.raises(TFLiteError, match="zip -0"):
        file.open("TF_LITE_EMBEDDER")


def test_zip_without_a_model_is_not_a_bundle(tmp_path: Path) -> None:
    path = tmp_path / "notes.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("README.txt", "hello")
    with pytest.raises(TFLiteError, match="no TFLite model"):
        open_file(path)


def test_litertlm_layout_follows_the_format(tmp_path: Path, parts: dict[str, bytes]) -> None:
    path = synthetic.write_litertlm(tmp_path / "g.litertlm")
    raw = path.read_bytes()
    assert raw[:8] == b"LITERTLM"
    major, _minor, _patch = struct.unpack_from("<3I", raw, 8)
    (header_end,) = struct.unpack_from("<Q", raw, 24)
    assert major == 1 and 32 < header_end < LITERTLM_BLOCK
    file = open_file(path)
    assert file.format == "litertlm"
    assert file.metadata["author"] == "SubnetScope synthetic"
    assert [(s.name, s.kind) for s in file.sections] == [
        ("TF_LITE_PREFILL_DECODE", "tflite"),
        ("TF_LITE_EMBEDDER", "tflite"),
        ("TF_LITE_PER_LAYER_EMBEDDER", "tflite"),
        ("SP_Tokenizer", "tokenizer"),
        ("LlmMetadataProto", "metadata"),
    ]
    for s in file.sections:
        assert s.offset % LITERTLM_BLOCK == 0  # sections start on 16 KiB blocks
        assert s.details["data_type"] in bundles.LITERTLM_SECTION_TYPES
    assert file.sections[0].details["model_type"] == "tf_lite_prefill_decode"
    assert file.read_section("SP_Tokenizer") == parts["TOKENIZER_MODEL"]
    from ai_edge_litert.interpreter import Interpreter

    for s in file.models:
        assert raw[s.offset : s.offset + s.size] == parts[s.name]
        with file.open(s.name) as reader:
            assert (reader.path, reader.offset, reader.size) == (path, s.offset, s.size)
            reader.info()
        # The section's bytes are a model LiteRT runs.
        Interpreter(model_content=raw[s.offset : s.offset + s.size]).allocate_tensors()


def test_litertlm_damage_is_reported(tmp_path: Path) -> None:
    good = synthetic.write_litertlm(tmp_path / "g.litertlm").read_bytes()
    cases = {
        "version": good[:8] + struct.pack("<I", 2) + good[12:],
        "header_end": good[:24] + struct.pack("<Q", 1 << 40) + good[32:],
        "truncated": good[: LITERTLM_BLOCK + 100],
        "header": good[:32] + b"\xff" * 64 + good[96:],
    }
    for label, data in cases.items():
        path = tmp_path / f"{label}.litertlm"
        path.write_bytes(data)
        with pytest.raises(TFLiteError):
            open_file(path)


def test_unknown_files_are_refused(tmp_path: Path) -> None:
    for name, data in {"e.tflite": b"", "t.txt": b"hello world, not a model", "x": b"PK"}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(TFLiteError):
            open_file(tmp_path / name)
    with pytest.raises(TFLiteError, match="cannot open"):
        open_file(tmp_path / "missing.tflite")
    with pytest.raises(TFLiteError):
        open_file(tmp_path)
