"""Generations side by side: the base, each adapter and blends on the same prompts, per call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from engine.errors import SubnetScopeError
from engine.lora.lowrank import Factors
from engine.models import LoadedModel

BASE = "base"


def side_by_side(
    loaded: LoadedModel,
    prompts: Sequence[str],
    variants: Mapping[str, Mapping[str, Factors] | None],
    *,
    max_new_tokens: int = 32,
) -> pd.DataFrame:
    """One row per prompt, one column per variant (None = the base model): greedy plain-text
    continuations, all prompts of a variant in one batch.

    Every variant's update is applied for its own calls only (engine.lora.live.apply_lora), so
    the shared model is never changed and other sessions never see a blend.
    """
    from engine.lora.live import apply_lora
    from engine.models.generation import generate_texts

    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise SubnetScopeError("Type at least one prompt.")
    table: dict[str, list[str]] = {"prompt": list(prompts)}
    for name, factors in variants.items():
        with apply_lora(loaded, factors):
            table[name] = generate_texts(loaded, prompts, max_new_tokens=max_new_tokens)
    return pd.DataFrame(table)
