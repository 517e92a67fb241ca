"""Quick real artifacts on a tiny model folder, shared by the passport, link and page tests: a
Wanda SparC3 run and ICA templates over a short prose file (seconds each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROSE = "\n\n".join(f"The {w} walked to the market at dawn." for w in "abcdefghij")


def quick_sparc3(model: str | Path, out: Path, **overrides: Any) -> Path:
    """A SparC3 run with Wanda scores (no LRP) on `model`, written to `out`."""
    from engine.attribution.sparc3 import SparC3Config, run_sparc3

    options = {
        "method": "wanda",
        "general_seeds": (0,),
        "general_samples": 2,
        "target_samples": 2,
        "generate": 4,
        "max_length": 32,
        "num_neurons": 8,
        "eval_nums": (0, 8),
        "eval_max_tokens": 64,
    } | overrides
    run_sparc3(SparC3Config(model=str(model), **options), out)
    return out


def write_prose(root: Path) -> Path:
    path = root / "prose.txt"
    path.write_text(PROSE)
    return path


def quick_templates(model: str | Path, prose: Path, out: Path):
    """ICA templates (3 components) of `model` over the prose file, saved at `out`."""
    from engine.ica import BuildConfig, build_templates

    config = BuildConfig(
        model=str(model),
        datasets=(str(prose),),
        samples_per_ds=10,
        components=3,
        percentile=90.0,
        max_length=32,
    )
    return build_templates(config, out)
