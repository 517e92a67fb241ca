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
    chat: bool | None = False,
) -> pd.DataFrame:
    """One row per prompt, one column per variant (None = the base model), greedy decoding.

    Every variant's update is applied for its own calls only (engine.lora.live.apply_lora), so
    the shared model is never changed and other sessions never see a blend.
    """
    from engine.lora.live import apply_lora
    from engine.models import generate_text

    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise SubnetScopeError("Type at least one prompt.")
    table: dict[str, list[str]] = {"prompt": list(prompts)}
    for name, factors in variants.items():
        with apply_lora(loaded, factors):
            table[name] = [
                generate_text(loaded, p, max_new_tokens=max_new_tokens, chat=chat).text
                for p in prompts
            ]
    return pd.DataFrame(table)
