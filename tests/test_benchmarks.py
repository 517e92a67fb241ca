"""The benchmark runner imports every registered benchmark and answers --help; the attention
capture's quick mode on a tiny model."""

from __future__ import annotations

import pytest

from benchmarks.runner import MODULES, load_benchmarks, main


def test_every_module_registers_its_benchmarks() -> None:
    names = set(load_benchmarks())
    assert {"cold_start", "mask_overhead"} <= names
    assert len(MODULES) >= 2


def test_help_exits_cleanly(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--only" in capsys.readouterr().out


@pytest.mark.slow
def test_attention_capture_quick_mode_agrees_with_output_attentions(tiny_folder, monkeypatch):
    """Both sides in their fresh processes on a tiny model: the same statistics, two results."""
    from benchmarks.attention_capture import MODEL_ENV, TOKENS_ENV, attention_capture

    monkeypatch.setenv(MODEL_ENV, tiny_folder("qwen2"))
    monkeypatch.setenv(TOKENS_ENV, "40")
    seconds, memory = attention_capture(1)
    assert seconds.details["max_abs_stat_diff"] < 1e-5 and seconds.details["tokens"] == 40
    assert seconds.baseline_value > 0 and memory.unit == "MB"
