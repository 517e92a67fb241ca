"""The attention area's options, without torch: its job kinds, CLI and demo parts read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import SubnetScopeError
from engine.models.precision import dtype_choice
from engine.params import ParamsConfig, whole_numbers

# The per-head statistics (engine/attention/capture.py), here so the CLI's choices need no torch.
STATS = ("entropy", "distance", "window_share", "sink")
STAT_LABELS = {
    "entropy": "entropy (nats)",
    "distance": "mean distance (tokens)",
    "window_share": "share inside the window",
    "sink": "mass on the first token",
}
SWEEP_KIND = "attention.sweep"
CONTEXT_KIND = "attention.context"
GLOBAL = "global"  # the sweep's default layer choice: every global (full-attention) layer

_MODEL_HELP = "model: 'demo', a model folder, a .gguf file or a hub id"
_DTYPE_HELP = "precision the model is loaded in: auto | bf16 | fp16 | fp32"
_TEXT_HELP = "text source: 'demo-general', 'demo-code', a .txt/.jsonl/.parquet file or a hub id"


def _at_least(config: object, names: tuple[str, ...], low: int = 1) -> None:
    for name in names:
        if int(getattr(config, name)) < low:
            raise SubnetScopeError(f"{name} must be ≥ {low}, not {getattr(config, name)}")


def check_positions(model_config: object, tokens: int, name: str) -> None:
    """One clear error where `tokens` is more than the model's positions (its config says)."""
    limit = getattr(model_config, "max_position_embeddings", None) or getattr(
        model_config, "n_positions", None
    )
    if isinstance(limit, int) and tokens > limit:
        raise SubnetScopeError(
            f"{tokens} tokens are more than {name} was built for ({limit} positions); ask for "
            f"at most {limit}"
        )


class _Params(ParamsConfig):
    def to_params(self) -> dict[str, Any]:
        # Lists, not tuples: what a job's spec.json holds after a JSON round trip (demo parts
        # match their params against it with ==).
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class StatsConfig(_Params):
    """Per-head statistics over a few texts (`attention stats`, `attention compare`)."""

    model: str = field(default="demo", metadata={"help": _MODEL_HELP})
    dtype: str = field(default="auto", metadata={"help": _DTYPE_HELP})
    text: str = field(default="demo-general", metadata={"help": _TEXT_HELP})
    texts: int = field(default=8, metadata={"help": "texts of the source to run, one at a time"})
    max_tokens: int = field(default=256, metadata={"help": "tokens kept per text"})
    window: int = field(
        default=32, metadata={"help": "w of the statistic 'share inside the window' (tokens)"}
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_choice(self.dtype))
        _at_least(self, ("texts", "window"))
        _at_least(self, ("max_tokens",), 2)


@dataclass(frozen=True)
class SweepConfig(_Params):
    """Options of the `attention.sweep` job: the loss of making each global layer local."""

    model: str = field(default="demo", metadata={"help": _MODEL_HELP})
    dtype: str = field(default="auto", metadata={"help": _DTYPE_HELP})
    text: str = field(default="demo-general", metadata={"help": _TEXT_HELP})
    texts: int = field(
        default=4, metadata={"help": "token windows scored (consecutive stretches of the source)"}
    )
    max_tokens: int = field(
        default=256, metadata={"help": "tokens per window; must exceed every sliding window"}
    )
    windows: tuple[int, ...] = field(
        default=(32,), metadata={"help": "sliding-window widths w to try (tokens incl. the query)"}
    )
    layers: str = field(
        default=GLOBAL,
        metadata={
            "help": "layers to make local one at a time: 'global' (every global layer) or a "
            "pattern such as '0-5' or '0,2,4' (global layers only)"
        },
    )
    sinks: int = field(
        default=0,
        metadata={
            "help": "first tokens kept visible inside the window (0: transformers' plain sliding "
            "window; 1 tells losing the attention sink from losing long-range context)"
        },
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_choice(self.dtype))
        windows = whole_numbers(self.windows, "windows")
        if not windows:
            raise SubnetScopeError("name at least one sliding window width")
        object.__setattr__(self, "windows", tuple(sorted(set(windows))))
        object.__setattr__(self, "layers", str(self.layers).strip() or GLOBAL)
        _at_least(self, ("texts",))
        _at_least(self, ("max_tokens",), 2)
        _at_least(self, ("sinks",), 0)
        if min(self.windows) < 1:
            raise SubnetScopeError(f"a sliding window must be ≥ 1 token, not {min(self.windows)}")
        if max(self.windows) >= self.max_tokens:
            raise SubnetScopeError(
                f"the texts ({self.max_tokens} tokens) must be longer than the window "
                f"({max(self.windows)}): a window that covers the whole text changes nothing"
            )


@dataclass(frozen=True)
class ContextConfig(_Params):
    """Options of the `attention.context` job: the statistics against text length."""

    model: str = field(default="demo", metadata={"help": _MODEL_HELP})
    dtype: str = field(default="auto", metadata={"help": _DTYPE_HELP})
    text: str = field(default="demo-general", metadata={"help": _TEXT_HELP})
    lengths: tuple[int, ...] = field(
        default=(128, 256, 512, 1024, 2048),
        metadata={"help": "text lengths in tokens; each is a prefix of the same long texts"},
    )
    texts: int = field(
        default=1,
        metadata={"help": "long texts, each made of consecutive source texts joined"},
    )
    window: int = field(
        default=32, metadata={"help": "w of the statistic 'share inside the window' (tokens)"}
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_choice(self.dtype))
        lengths = whole_numbers(self.lengths, "lengths")
        if not lengths:
            raise SubnetScopeError("name at least one text length")
        if min(lengths) < 2:
            raise SubnetScopeError(f"a text length must be ≥ 2 tokens, not {min(lengths)}")
        object.__setattr__(self, "lengths", tuple(sorted(set(lengths))))
        _at_least(self, ("texts", "window"))


# The demo's parts (engine/demo/registry.py): on the demo model, where every layer is global.
DEMO_SWEEP: dict[str, Any] = SweepConfig().to_params() | {"model": "demo"}
DEMO_CONTEXT: dict[str, Any] = ContextConfig().to_params() | {"model": "demo"}
