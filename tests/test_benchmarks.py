"""The benchmark runner imports every registered benchmark and answers --help (no timing here)."""

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
