"""Unit tests for engine.atomic: a failed write keeps the old file, folders are replaced whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engine.atomic import (
    atomic_dir,
    atomic_path,
    save_safetensors_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_failing_writer_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(path) as tmp:
        tmp.write_text("half a new")
        raise RuntimeError("disk on fire")
    assert path.read_text() == "old"
    assert _entries(tmp_path) == ["table.parquet"]


def test_failing_library_writer_keeps_old_json(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"b": object()}, default=None)  # not serializable
    assert json.loads(path.read_text()) == {"a": 1}
    assert _entries(tmp_path) == ["summary.json"]


def test_writes_create_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "blob.bin"
    write_bytes_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"


def test_json_defaults_and_options(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_json_atomic(path, {"b": Path("p"), "a": "é"})
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps({"b": "p", "a": "é"}, indent=2) + "\n"  # indent 2, str(), newline
    write_json_atomic(path, {"b": 1, "a": "é"}, indent=None, sort_keys=True, ensure_ascii=False)
    assert path.read_text(encoding="utf-8") == '{"a": "é", "b": 1}\n'


def test_parquet_options_reach_pandas(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = pd.DataFrame({"x": [1, 2]}, index=[5, 6])
    write_parquet_atomic(path, table, index=False)
    back = pd.read_parquet(path)
    assert back["x"].tolist() == [1, 2]
    assert back.index.tolist() == [0, 1]  # index=False reached to_parquet


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_safetensors_numpy_and_torch(tmp_path: Path, framework: str) -> None:
    from safetensors import safe_open

    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensors = {"w": values if framework == "numpy" else torch.from_numpy(values)}
    path = tmp_path / "w.safetensors"
    save_safetensors_atomic(path, tensors, {"method": "test"})
    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"method": "test"}
        np.testing.assert_array_equal(f.get_tensor("w"), values)
    assert _entries(tmp_path) == ["w.safetensors"]


def test_atomic_dir_creates_and_replaces_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "old.txt").write_text("1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "deep.txt").write_text("2")
    assert (target / "sub" / "deep.txt").read_text() == "2"
    with atomic_dir(target) as tmp:
        assert not target.samefile(tmp)
        (tmp / "new.txt").write_text("3")
    assert _entries(target) == ["new.txt"]  # replaced whole, not merged
    assert _entries(tmp_path) == ["model"]


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "adapter_config.json").write_text("{}")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "adapter_model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-save")
    assert _entries(target) == ["adapter_config.json"]
    assert _entries(tmp_path) == ["adapter"]
