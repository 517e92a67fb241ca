"""How a pair of checkpoints stores its float weights, and the diff criterion that shows what the
run changed in that storage (the sparsity page opens on it)."""

from __future__ import annotations

from engine.errors import SubnetScopeError
from engine.sparsity.resolve import open_source
from engine.sparsity.result import DiffResult
from engine.sparsity.sources import no_hub_downloads

HALF = {"BF16", "F16"}  # safetensors codes of 16-bit float storage

# 16-bit: a stored bf16 value changed (what check_sparsity.py counts as nonzero); mixed: both
# sides rounded to bf16 first, else the base's own rounding counts as a change everywhere;
# fp32: τ, what the seed's trackers compute on an fp32 run.
OPENING = {"16-bit": "exact", "mixed": "bf16-visible", "fp32": "τ"}


def storage_precision(base_codes: set[str], tuned_codes: set[str]) -> str | None:
    """'16-bit': both sides store their floats in bf16 / fp16; 'mixed': one side does and the
    other stores wider floats (a bf16 run against its fp32 base model); 'fp32': neither does."""
    if not base_codes or not tuned_codes:
        return None
    halves = (base_codes <= HALF, tuned_codes <= HALF)
    return "16-bit" if all(halves) else "mixed" if any(halves) else "fp32"


def pair_precision(base: str, tuned: str) -> str | None:
    """`storage_precision` read from the checkpoints' headers (never downloads); None when they
    cannot be read (the diff itself will say why)."""
    try:
        with no_hub_downloads():
            base_src = open_source(base)
            tuned_src = open_source(tuned, base=base_src)
            codes = [
                {spec.dtype for spec in src.specs().values() if spec.is_float}
                for src in (base_src, tuned_src)
            ]
    except SubnetScopeError:
        return None
    return storage_precision(*codes)


def result_precision(result: DiffResult) -> str | None:
    """The same classification from a finished diff's per-tensor dtypes ('F32', 'F32->BF16')."""
    sides: tuple[set[str], set[str]] = (set(), set())
    for dtype in result.tensors["dtype"].unique():
        parts = str(dtype).split("->")
        for side, code in zip(sides, (parts[0], parts[-1]), strict=True):
            if code.startswith(("F", "BF")):
                side.add(code)
    return storage_precision(*sides)


def opening_criterion(precision: str | None) -> str:
    """The criterion name ('exact', 'bf16-visible' or 'τ') a view of this storage opens on."""
    return OPENING.get(precision or "fp32", "τ")
