"""Unit tests for engine.cache: fingerprints, keys, atomic writes, races and round-trips."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch

import engine
from engine.cache import ArtifactStore, cache_key, fingerprint_model, fingerprint_path
from engine.cache.store import MANIFEST, TMP_PREFIX
from engine.errors import SubnetScopeError


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def _visible(root: Path) -> list[Path]:
    """Everything under root that is not a temp folder or a lock file."""
    return [p for p in root.rglob("*") if not any(part.startswith(".") for part in p.parts[-2:])]


# --- fingerprints and keys ---------------------------------------------------------------------


def test_same_inputs_give_same_key(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("hello")
    inputs = {"data": fingerprint_path(f), "model": fingerprint_model("org/model", "main")}
    params = {"n": 3, "layers": [1, 2]}
    key = cache_key("ppl", inputs, params)
    assert len(key) == 24
    assert key == cache_key("ppl", dict(reversed(inputs.items())), {"layers": [1, 2], "n": 3})
    json.dumps(inputs)  # fingerprints are plain JSON


def test_key_changes_with_kind_param_content_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "a.txt"
    f.write_text("hello")
    base = cache_key("ppl", [fingerprint_path(f)], {"n": 3})
    assert cache_key("attr", [fingerprint_path(f)], {"n": 3}) != base
    assert cache_key("ppl", [fingerprint_path(f)], {"n": 4}) != base
    f.write_text("hellO")  # same size, new content
    assert cache_key("ppl", [fingerprint_path(f)], {"n": 3}) != base
    f.write_text("hello")
    assert cache_key("ppl", [fingerprint_path(f)], {"n": 3}) == base
    monkeypatch.setattr(engine, "__version__", "999.0")
    assert cache_key("ppl", [fingerprint_path(f)], {"n": 3}) != base


def test_large_file_fingerprint_uses_mtime(tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\0" * ((1 << 20) + 1))  # just over the content-hash limit
    before = fingerprint_path(f)
    assert "sha256" not in before
    os.utime(f, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))
    after = fingerprint_path(f)
    assert after["mtime_ns"] != before["mtime_ns"]
    assert cache_key("k", [after], {}) != cache_key("k", [before], {})


def test_folder_fingerprint_is_sorted_and_recursive(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "b.json").write_text("{}")
    (model / "a.json").write_text("{}")
    (model / "sub" / "c.bin").write_bytes(b"123")
    fp = fingerprint_path(model)
    assert [f["name"] for f in fp["files"]] == ["a.json", "b.json", "sub/c.bin"]
    assert fingerprint_model(str(model))["local"] == fp
    before = cache_key("k", fp, {})
    (model / "sub" / "c.bin").write_bytes(b"124")
    assert cache_key("k", fingerprint_path(model), {}) != before


def test_fingerprint_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SubnetScopeError, match="no such file"):
        fingerprint_path(tmp_path / "nope")


# --- store ---------------------------------------------------------------------------------------


def test_round_trip_json_table_tensors(store: ArtifactStore) -> None:
    table = pd.DataFrame({"layer": [0, 1], "ppl": [12.5, 13.25], "name": ["a", "b"]})
    tensors = {"w": torch.arange(6, dtype=torch.float32).view(2, 3).t(), "i": torch.tensor([1, 2])}
    with store.writer("scores", "abc123", params={"n": 2}, inputs=[], meta={"note": "x"}) as w:
        w.write_json("summary.json", {"mean": 1.5})
        w.write_table("scores.parquet", table)
        w.write_tensors("acts.safetensors", tensors)
    entry = store.get("scores", "abc123")
    assert entry is not None
    assert entry.read_json("summary.json") == {"mean": 1.5}
    pd.testing.assert_frame_equal(entry.read_table("scores.parquet"), table)
    loaded = entry.read_tensors("acts.safetensors")
    assert torch.equal(loaded["w"], tensors["w"])
    assert torch.equal(loaded["i"], tensors["i"])
    manifest = entry.manifest
    assert (manifest["kind"], manifest["key"], manifest["params"]) == ("scores", "abc123", {"n": 2})
    assert manifest["meta"] == {"note": "x"}
    assert manifest["engine_version"] == engine.__version__
    names = {f["name"]: f["size"] for f in manifest["files"]}
    assert set(names) == {"summary.json", "scores.parquet", "acts.safetensors"}
    assert names["scores.parquet"] == (entry.path / "scores.parquet").stat().st_size
    with pytest.raises(SubnetScopeError, match="no file"):
        entry.read_json("missing.json")


def test_exception_in_writer_leaves_nothing(store: ArtifactStore) -> None:
    def fail_midway() -> None:
        with store.writer("scores", "k1") as w:
            w.write_json("half.json", {"x": 1})
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    assert store.get("scores", "k1") is None
    assert store.list() == []
    assert not any(p.name.startswith(TMP_PREFIX) for p in store.root.rglob("*"))
    assert _visible(store.root) == [store.root / "scores"]


def test_incomplete_folders_are_invisible_and_cleaned(store: ArtifactStore) -> None:
    crashed = store.root / "scores" / f"{TMP_PREFIX}k2-xyz"
    crashed.mkdir(parents=True)
    (crashed / "data.json").write_text("{}")
    (crashed / MANIFEST).write_text("{}")  # even a temp folder with a manifest is not an entry
    no_manifest = store.root / "scores" / "k3"
    no_manifest.mkdir()
    (no_manifest / "data.json").write_text("{}")
    assert store.list() == []
    assert store.list("scores") == []
    assert store.get("scores", "k3") is None
    assert store.clean_stale(max_age_s=3600) == 0  # fresh: maybe a writer still running
    old = 1_000_000_000
    os.utime(crashed / "data.json", (old, old))
    os.utime(crashed / MANIFEST, (old, old))
    os.utime(crashed, (old, old))
    assert store.clean_stale(max_age_s=3600) == 1
    assert not crashed.exists()
    # A later writer replaces the manifest-less folder.
    with store.writer("scores", "k3") as w:
        w.write_json("data.json", {"ok": True})
    entry = store.get("scores", "k3")
    assert entry is not None
    assert entry.read_json("data.json") == {"ok": True}


def test_list_newest_first_and_delete(store: ArtifactStore) -> None:
    for kind, key in [("a", "k1"), ("b", "k2"), ("a", "k3")]:
        with store.writer(kind, key) as w:
            w.write_json("x.json", key)
    assert [e.key for e in store.list()] == ["k3", "k2", "k1"]
    assert [e.key for e in store.list("a")] == ["k3", "k1"]
    assert store.list("never") == []
    assert store.delete("a", "k3") is True
    assert store.delete("a", "k3") is False
    assert store.get("a", "k3") is None
    assert [e.key for e in store.list()] == ["k2", "k1"]


def test_second_writer_keeps_first_entry(store: ArtifactStore) -> None:
    with store.writer("scores", "k") as w:
        w.write_json("v.json", 1)
    with store.writer("scores", "k") as w:
        w.write_json("v.json", 2)
    entry = store.get("scores", "k")
    assert entry is not None
    assert entry.read_json("v.json") == 1
    assert len(store.list()) == 1


def test_concurrent_writers_end_with_one_valid_entry(store: ArtifactStore) -> None:
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            start.wait()
            with store.writer("scores", "race") as w:
                w.write_json("who.json", i)
                w.write_tensors("t.safetensors", {"x": torch.full((64,), float(i))})
        except BaseException as exc:  # surfaced below: threads swallow exceptions
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    (entry,) = store.list()
    who = entry.read_json("who.json")
    assert torch.equal(entry.read_tensors("t.safetensors")["x"], torch.full((64,), float(who)))
    assert not any(p.name.startswith(TMP_PREFIX) for p in store.root.rglob("*"))


def test_get_or_compute_computes_once(store: ArtifactStore) -> None:
    calls = []

    def compute(w) -> None:
        calls.append(1)
        w.write_json("out.json", {"v": 42})

    threads = [
        threading.Thread(target=store.get_or_compute, args=("ppl", [], {"n": 1}, compute))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entry = store.get_or_compute("ppl", [], {"n": 1}, compute)
    assert len(calls) == 1
    assert entry.key == cache_key("ppl", [], {"n": 1})
    assert entry.read_json("out.json") == {"v": 42}
    assert store.get_or_compute("ppl", [], {"n": 2}, compute).key != entry.key
    assert len(calls) == 2


def test_bad_names_are_rejected(store: ArtifactStore) -> None:
    with pytest.raises(ValueError, match="invalid artifact kind"):
        store.get("../etc", "k")
    with store.writer("scores", "k") as w, pytest.raises(ValueError, match="invalid file name"):
        w.write_json("../escape.json", {})
    assert not (store.root / "scores" / "escape.json").exists()
