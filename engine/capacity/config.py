"""The capacity meter's options, without torch: its job kind, CLI and page read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import SubnetScopeError
from engine.params import ParamsConfig, whole_numbers

KIND = "capacity.meter"
RUNS_FILE = "runs.parquet"  # one row per size × N × precision × seed
CAPACITY_FILE = "capacity.parquet"  # one row per size × precision
PRECISIONS = ("fp32", "bf16")
# Morris et al., arXiv 2505.24832, Table 1: mean bits per parameter over GPT-2 sizes
# {1, 2, 4, 8} layers × d {32 … 256} at V = 2048, S = 64, trained 10⁶ steps.
PAPER_BITS_PER_PARAM = {"bf16": 3.51, "fp32": 3.83}
PAPER_FIT = 3.642  # the paper's fitted slope α (bf16): memorized bits ≈ α · parameters


def _sizes(value: object) -> tuple[tuple[int, int], ...]:
    """[(layers, width), ...] from a list of pairs or of "LxW" strings ("1x32")."""
    items = [value] if isinstance(value, str) else list(value)  # type: ignore[arg-type]
    out = []
    for item in items:
        try:
            layers, width = (
                (int(p) for p in item.lower().split("x")) if isinstance(item, str) else item
            )
            out.append((int(layers), int(width)))
        except (TypeError, ValueError):
            raise SubnetScopeError(
                f"a model size is (layers, width) or 'LxW' such as '1x32', not {item!r}"
            ) from None
    return tuple(out)


@dataclass(frozen=True)
class MeterConfig(ParamsConfig):
    """Options of the `capacity.meter` job: which GPT-2 sizes learn which random datasets, how."""

    sizes: tuple[tuple[int, int], ...] = field(
        default=((1, 8), (1, 16), (1, 32)),
        metadata={"help": "model sizes as (layers, width) pairs, 'LxW' on the command line"},
    )
    n: tuple[int, ...] = field(
        default=(32, 64, 128, 256, 512),
        metadata={"help": "dataset sizes N: the number of random sequences each size learns"},
    )
    vocab: int = field(
        default=256, metadata={"help": "V: token ids drawn uniformly (log₂V bits per token)"}
    )
    length: int = field(default=32, metadata={"help": "S: tokens per sequence"})
    precisions: tuple[str, ...] = field(
        default=("fp32",),
        metadata={
            "help": "fp32 | bf16 (bf16: weights, activations and Adam's state stored in "
            "bfloat16, the loss in float32; no float32 master copy)"
        },
    )
    seeds: tuple[int, ...] = field(
        default=(0,), metadata={"help": "seeds: each changes both the data and the initialization"}
    )
    max_steps: int = field(
        default=3_000, metadata={"help": "the most optimizer steps of one run (no plateau: stops)"}
    )
    eval_every: int = field(
        default=100, metadata={"help": "steps between two measurements of the training set"}
    )
    patience: int = field(
        default=3,
        metadata={
            "help": "measurements without a gain above tol before the lr drops / the run stops"
        },
    )
    tol: float = field(
        default=0.005,
        metadata={"help": "a gain below tol × the best memorized bits counts as no gain"},
    )
    lr: float = field(default=0.01, metadata={"help": "Adam's learning rate at the start"})
    lr_drops: int = field(
        default=2, metadata={"help": "plateaus that drop the lr (× 0.3) before one ends the run"}
    )
    batch: int = field(default=128, metadata={"help": "sequences per optimizer step (at most N)"})
    report_to: str = field(
        default="tensorboard",
        metadata={
            "help": "'tensorboard': every metric of the job also goes to TensorBoard event files "
            "in <job>/tensorboard/ (python -m engine jobs tensorboard serves them); 'none': off"
        },
    )

    def __post_init__(self) -> None:
        sizes = _sizes(self.sizes)
        if not sizes or min(min(s) for s in sizes) < 1:
            raise SubnetScopeError(f"name at least one size with layers and width ≥ 1: {sizes}")
        object.__setattr__(self, "sizes", tuple(sorted(set(sizes))))
        n = whole_numbers(self.n, "n")
        if not n or min(n) < 1:
            raise SubnetScopeError(f"name at least one dataset size N ≥ 1, not {self.n!r}")
        object.__setattr__(self, "n", tuple(sorted(set(n))))
        precisions = (self.precisions,) if isinstance(self.precisions, str) else self.precisions
        wrong = sorted(set(precisions) - set(PRECISIONS))
        if wrong or not precisions:
            raise SubnetScopeError(
                f"precisions must be among {', '.join(PRECISIONS)}, "
                f"not {', '.join(wrong) or 'none'}"
            )
        object.__setattr__(self, "precisions", tuple(p for p in PRECISIONS if p in precisions))
        seeds = whole_numbers(self.seeds, "seeds")
        if not seeds:
            raise SubnetScopeError("name at least one seed")
        object.__setattr__(self, "seeds", tuple(dict.fromkeys(seeds)))
        for name, low in (("vocab", 2), ("length", 1), ("max_steps", 1), ("eval_every", 1)):
            if int(getattr(self, name)) < low:
                raise SubnetScopeError(f"{name} must be ≥ {low}, not {getattr(self, name)}")
        for name in ("patience", "batch"):
            if int(getattr(self, name)) < 1:
                raise SubnetScopeError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        if self.lr_drops < 0 or self.tol < 0 or self.lr <= 0:
            raise SubnetScopeError(
                f"lr must be > 0 and tol, lr_drops ≥ 0 (lr={self.lr}, tol={self.tol}, "
                f"lr_drops={self.lr_drops})"
            )

    @property
    def runs(self) -> int:
        return len(self.sizes) * len(self.n) * len(self.precisions) * len(self.seeds)

    def to_params(self) -> dict[str, Any]:
        # Lists, not tuples: what a job's spec.json holds after a JSON round trip.
        params = asdict(self)
        params["sizes"] = [list(s) for s in self.sizes]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def size_label(layers: int, width: int) -> str:
    return f"{layers}L×d{width}"


# The demo part: three sizes, fp32, four dataset sizes (N = 64 is already past 1L×d8's capacity
# and below 1L×d32's; 512 past all three), about 12 minutes on one core.
DEMO_METER: dict[str, Any] = MeterConfig(n=(64, 128, 256, 512)).to_params()
