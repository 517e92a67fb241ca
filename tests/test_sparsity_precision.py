"""How a checkpoint pair stores its floats, and the criterion the sparsity page opens on."""

from __future__ import annotations

import torch

from engine.sparsity.precision import opening_criterion, pair_precision, storage_precision
from tests.tiny import tiny_model


def test_storage_precision_classes() -> None:
    assert storage_precision({"BF16"}, {"BF16"}) == "16-bit"
    assert storage_precision({"F16"}, {"BF16"}) == "16-bit"
    assert storage_precision({"F32"}, {"BF16"}) == "mixed"
    assert storage_precision({"F32", "BF16"}, {"F32"}) == "fp32"  # any wider float: not 16-bit
    assert storage_precision(set(), {"BF16"}) is None
    assert [opening_criterion(p) for p in ("16-bit", "mixed", "fp32", None)] == [
        "exact",
        "bf16-visible",
        "τ",
        "τ",
    ]


def test_pair_precision_reads_the_headers(tmp_path) -> None:
    model = tiny_model("llama").model
    model.save_pretrained(tmp_path / "fp32")
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    fp32, bf16 = str(tmp_path / "fp32"), str(tmp_path / "bf16")
    assert pair_precision(fp32, fp32) == "fp32"
    assert pair_precision(bf16, bf16) == "16-bit"
    assert pair_precision(fp32, bf16) == "mixed"
    assert pair_precision(str(tmp_path / "missing"), bf16) is None  # the diff says why
