"""The ICA area's options, without torch: the job kind and the CLI read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.errors import SubnetScopeError
from engine.ica.templates import THRESHOLDS, check_space


@dataclass(frozen=True)
class ICAConfig:
    """How to decompose; each field's help serves the CLI and the job form."""

    n_components: int = field(default=20, metadata={"help": "independent components to find"})
    pca: int | str = field(
        default="auto",
        metadata={
            "help": "dimensions kept by PCA before ICA: 'auto' (max(10 × components, 200) when "
            "the matrix is wider), a number, or 0 for FastICA on the full matrix (only allowed "
            "below the LAPACK limit and the memory budget)"
        },
    )
    standardize: bool = field(
        default=True,
        metadata={
            "help": "z-score every feature (neuron / channel) before PCA and FastICA, as seed "
            "001's reference does (on; off: raw activations, where the loud last layers "
            "dominate the key sets)"
        },
    )
    max_iter: int = field(default=400, metadata={"help": "FastICA iterations"})
    tol: float = field(default=1e-4, metadata={"help": "FastICA convergence tolerance"})
    seed: int = field(default=0, metadata={"help": "random seed (PCA sketch, ICA start)"})
    memory_budget: int = field(
        default=2 << 30, metadata={"help": "bytes FastICA may use for a full-matrix copy"}
    )


DEFAULT_MEMORY_BUDGET = 2 << 30  # bytes of activations held in RAM before spilling to disk


@dataclass(frozen=True)
class BuildConfig:
    """Options of `ica build-templates` and the `ica.build_templates` job."""

    model: str = field(
        default="demo", metadata={"help": "model: 'demo', a folder, .gguf or hub id"}
    )
    datasets: tuple[str, ...] = field(
        default=("demo-general", "demo-code"),
        metadata={"help": "text sources (files, 'demo-general', 'demo-code' or hub ids)"},
    )
    samples_per_ds: int = field(default=500, metadata={"help": "texts drawn from each dataset"})
    components: int = field(default=20, metadata={"help": "independent components"})
    percentile: float = field(
        default=95.0, metadata={"help": "key neurons: |weight| at or above this percentile"}
    )
    threshold: str = field(
        default="percentile", metadata={"help": "key-neuron rule: percentile or zscore (|z|>1.96)"}
    )
    layers: str = field(default="all", metadata={"help": "layers: 'all', '0-5', '0,2,4'"})
    max_length: int = field(default=128, metadata={"help": "tokens kept per text"})
    pca: str = field(
        default="auto", metadata={"help": ICAConfig.__dataclass_fields__["pca"].metadata["help"]}
    )
    space: str = field(
        default="mlp_neurons",
        metadata={
            "help": "neuron space: mlp_neurons (down projection input, intermediate neurons) or "
            "mlp_out (down projection output, hidden-size channels: seed 001's reference)"
        },
    )
    standardize: bool = field(
        default=True,
        metadata={"help": ICAConfig.__dataclass_fields__["standardize"].metadata["help"]},
    )
    seed: int = field(default=0, metadata={"help": "seed for sampling texts, PCA and ICA"})
    memory_budget_gb: float = field(
        default=DEFAULT_MEMORY_BUDGET / 2**30,
        metadata={"help": "activations held in RAM before they spill to disk, GiB"},
    )
    batch_size: int = field(default=8, metadata={"help": "texts per forward pass"})

    def __post_init__(self) -> None:
        if isinstance(self.datasets, str):
            object.__setattr__(self, "datasets", (self.datasets,))
        object.__setattr__(self, "datasets", tuple(self.datasets))
        if not self.datasets:
            raise SubnetScopeError("name at least one dataset to build templates from")
        for name in ("samples_per_ds", "components", "max_length", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        check_space(self.space)
        if self.threshold not in THRESHOLDS:
            raise SubnetScopeError(
                f"unknown threshold '{self.threshold}'; use one of {', '.join(THRESHOLDS)}"
            )

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BuildConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise SubnetScopeError(
                f"unknown option {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**params)

    def to_params(self) -> dict[str, Any]:
        out = asdict(self)
        out["datasets"] = list(self.datasets)
        return out
