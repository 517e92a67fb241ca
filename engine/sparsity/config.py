"""The diff's options as one dataclass: each field's help text serves the CLI and the page alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.errors import SubnetScopeError

# The seed's thresholds: check_sparsity.py's 1e-5 and main_ppo.py's tau 1e-6 (seed 000).
DEFAULT_TOLERANCES = (1e-5, 1e-6)
EXACT = "exact"  # the stored bits differ
BF16 = "bf16"  # bf16(tuned) != bf16(base): the change survives storage in bf16


# check_sparsity.py's --torch_dtype choices (engine.sparsity.reference maps them to torch's).
REFERENCE_DTYPES = ("bfloat16", "float16", "float32")


def check_reference_dtype(name: str) -> str:
    if name not in REFERENCE_DTYPES:
        raise SubnetScopeError(
            f"unknown reference dtype '{name}': use one of {', '.join(REFERENCE_DTYPES)} "
            "(check_sparsity.py's --torch_dtype)"
        )
    return name


def tolerance_key(tau: float) -> str:
    """The name of a tolerance criterion, as masks and neuron tables label it: '1e-06'."""
    return f"{float(tau):g}"


def parse_criterion(text: str | float) -> str:
    """'exact', 'bf16', or a tolerance ('1e-6', 1e-6) → its canonical label."""
    if text in (EXACT, BF16):
        return str(text)
    try:
        tau = float(text)
    except (TypeError, ValueError):
        raise SubnetScopeError(
            f"unknown change criterion '{text}': use 'exact', 'bf16' or a tolerance like 1e-6"
        ) from None
    if not tau >= 0:
        raise SubnetScopeError(f"a tolerance must be a number ≥ 0, not {text}")
    return tolerance_key(tau)


@dataclass(frozen=True)
class DiffConfig:
    """How to diff a base model against a tuned one."""

    tolerances: tuple[float, ...] = field(
        default=DEFAULT_TOLERANCES,
        metadata={"help": "count an element as changed at τ when |tuned − base| > τ"},
    )
    mask_criterion: str = field(
        default="auto",
        metadata={
            "help": "which changes the saved bit masks mark (coverage and overlap use them): "
            "'exact', 'bf16' or a tolerance; 'auto' = the smallest tolerance"
        },
    )
    masks: bool = field(
        default=True, metadata={"help": "save bit-packed update masks (1 bit per weight)"}
    )
    ranks: bool = field(
        default=False,
        metadata={"help": "classical, effective and stable rank of every 2-D update ΔW"},
    )
    rank_rtol: float | None = field(
        default=None,
        metadata={
            "help": "classical rank counts σ > rtol·σ_max; default max(m, n)·eps(float32), "
            "numpy.linalg.matrix_rank's rule"
        },
    )
    rank_memory_mb: int = field(
        default=1024,
        metadata={
            "help": "largest ΔW (MB, float32) whose full spectrum is computed; "
            "larger ones are reported as skipped, never approximated"
        },
    )
    intersection: bool = field(
        default=False,
        metadata={"help": "compare only the tensors both models have with equal shapes"},
    )
    block_mb: int = field(
        default=8,
        metadata={
            "help": "MB of float32 rows read at once by the block path (pairs the mapped path "
            "cannot take: mixed dtypes, adapters, in-memory sources)"
        },
    )
    reference: bool = field(
        default=False,
        metadata={
            "help": "also compute the seed's reference numbers (sparsity_in_rl check_sparsity.py): "
            "both sides cast to reference_dtype, |Δ| ≤ τ by torch.isclose, unweighted per-layer "
            "means"
        },
    )
    reference_dtype: str = field(
        default="bfloat16",
        metadata={
            "help": "the dtype the reference loads both checkpoints in (the script's "
            "--torch_dtype, bfloat16 by default)"
        },
    )

    def __post_init__(self) -> None:
        taus = tuple(sorted({float(t) for t in self.tolerances}, reverse=True))
        if not taus:
            raise SubnetScopeError("give at least one tolerance")
        for tau in taus:
            parse_criterion(tau)
        object.__setattr__(self, "tolerances", taus)
        check_reference_dtype(self.reference_dtype)
        object.__setattr__(self, "mask_criterion", self.resolved_mask_criterion())
        if self.mask_criterion not in self.criteria:
            raise SubnetScopeError(
                f"the mask tolerance {self.mask_criterion} is not one of the tolerances "
                f"({', '.join(self.criteria[:-2])}); add it to them"
            )

    def resolved_mask_criterion(self) -> str:
        if self.mask_criterion == "auto":
            return tolerance_key(min(self.tolerances))
        return parse_criterion(self.mask_criterion)

    @property
    def criteria(self) -> tuple[str, ...]:
        """Every change criterion the diff counts: the tolerances, then exact and bf16."""
        return (*(tolerance_key(t) for t in self.tolerances), EXACT, BF16)

    def cache_params(self) -> dict[str, Any]:
        """The options that change results (the read block size does not)."""
        params = asdict(self)
        params.pop("block_mb")
        if not self.reference:  # results without the reference keep their earlier cache keys
            params.pop("reference")
            params.pop("reference_dtype")
        params["tolerances"] = list(self.tolerances)
        return params

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)
