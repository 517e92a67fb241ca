"""The generator's architecture config, light (no torch): shared by the hyper-network and jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import SubnetScopeError

ARCHS = ("mlp", "hyperconv")
FORMAT = "subnetscope-lora-generator/1"


@dataclass(frozen=True)
class TargetSpec:
    """One module the generator writes a LoRA update for: ΔW (d_out, d_in) = s · B @ A."""

    path: str  # the plain model's module path, e.g. model.layers.0.self_attn.q_proj
    d_out: int
    d_in: int

    @property
    def kind(self) -> str:
        """The module's own name (q_proj, v_proj, c_attn…): modules of one kind share a head."""
        return self.path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class GeneratorConfig:
    """What a LoRA generator outputs (rank, alpha, target shapes) and how it is built."""

    arch: str  # "mlp" | "hyperconv"
    cond_dim: int  # the prompt encoder's embedding size
    rank: int
    alpha: float
    targets: tuple[TargetSpec, ...]
    hidden: int = 256  # mlp: trunk width; hyperconv: channels = hidden // 8
    delta_dim: int = 0  # > 0: a δ-prediction head (delta-guided loss) of this size (model hidden)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise SubnetScopeError(
                f"unknown generator architecture '{self.arch}'; use one of {', '.join(ARCHS)}"
            )
        if self.cond_dim < 1 or self.rank < 1 or self.hidden < 8 or self.delta_dim < 0:
            raise SubnetScopeError(
                "a generator needs cond_dim ≥ 1, rank ≥ 1, hidden ≥ 8 and delta_dim ≥ 0, got "
                f"cond_dim={self.cond_dim}, rank={self.rank}, hidden={self.hidden}, "
                f"delta_dim={self.delta_dim}"
            )
        if not self.targets:
            raise SubnetScopeError("a generator needs at least one target module")
        paths = [t.path for t in self.targets]
        if len(set(paths)) != len(paths):
            raise SubnetScopeError("the generator's target modules repeat a path")
        for t in self.targets:
            if t.d_out < 1 or t.d_in < 1:
                raise SubnetScopeError(f"target '{t.path}' has an empty shape {t.d_out}×{t.d_in}")

    @property
    def scale(self) -> float:
        """PEFT's LoRA scaling s = alpha / rank."""
        return self.alpha / self.rank

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "cond_dim": self.cond_dim,
            "rank": self.rank,
            "alpha": self.alpha,
            "hidden": self.hidden,
            "delta_dim": self.delta_dim,
            "targets": [[t.path, t.d_out, t.d_in] for t in self.targets],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GeneratorConfig:
        try:
            return cls(
                arch=str(d["arch"]),
                cond_dim=int(d["cond_dim"]),
                rank=int(d["rank"]),
                alpha=float(d["alpha"]),
                targets=tuple(TargetSpec(str(p), int(o), int(i)) for p, o, i in d["targets"]),
                hidden=int(d.get("hidden", 256)),
                delta_dim=int(d.get("delta_dim", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SubnetScopeError(f"the generator config is malformed ({exc!r})") from None
