"""tests/optional.py: a missing optional tool skips, or fails where the environment requires it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import optional, tflite_support


def test_a_missing_tool_skips_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUBNETSCOPE_REQUIRE_OPTIONAL", raising=False)
    monkeypatch.delenv("SUBNETSCOPE_REQUIRE_SLURM", raising=False)
    optional.need("slurm", True, "present: nothing happens")
    with pytest.raises(pytest.skip.Exception, match="slurm: no cluster"):
        optional.need("slurm", False, "no cluster")
    monkeypatch.setenv("SUBNETSCOPE_REQUIRE_OPTIONAL", "proc, slurm")
    with pytest.raises(pytest.fail.Exception, match="slurm is required in this run"):
        optional.need("slurm", False, "no cluster")
    with pytest.raises(pytest.skip.Exception):
        optional.need("mediapipe-samples", False, "not fetched")
    monkeypatch.setenv("SUBNETSCOPE_REQUIRE_OPTIONAL", "1")
    assert all(optional.required(tool) for tool in optional.TOOLS)
    monkeypatch.setenv("SUBNETSCOPE_REQUIRE_OPTIONAL", "")
    monkeypatch.setenv("SUBNETSCOPE_REQUIRE_SLURM", "1")  # the older name still works
    assert optional.required("slurm") and not optional.required("proc")
    with pytest.raises(ValueError, match="unknown optional tool"):
        optional.required("mediapipe")


def test_missing_samples_still_give_one_test_that_skips_or_fails(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tflite_support, "MEDIAPIPE", tmp_path)
    assert tflite_support.mediapipe_names() == [tflite_support.NOT_FETCHED]
    monkeypatch.setenv("SUBNETSCOPE_REQUIRE_OPTIONAL", "mediapipe-samples")
    with pytest.raises(pytest.fail.Exception, match="mediapipe-samples"):
        tflite_support.need_mediapipe()
    (tmp_path / "m.tflite").write_bytes(b"")
    assert tflite_support.mediapipe_names() == ["m.tflite"]
    tflite_support.need_mediapipe()


def test_skips_go_through_need_only() -> None:
    """No importorskip (it turns a broken import into a skip) and no skip of any other kind."""
    root = Path(__file__).resolve().parents[1]
    allowed = {"tests/optional.py", "tests/test_optional.py"}
    found = []
    for folder in ("tests", "benchmarks", "faults"):
        for path in sorted((root / folder).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            text = path.read_text()
            if name not in allowed and any(
                word in text for word in ("importorskip", "pytest.skip(", "mark.skip")
            ):
                found.append(name)
    assert found == []
