"""Seed 002's data sets by name, through the hub: C4 shuffled with a seed and a buffer,
RealToxicityPrompts filtered to prompt toxicity ≥ 0.9, WikiText-2's test split for perplexity.

They need the Hugging Face hub (or its local cache); offline each fails with one sentence.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from typing import Any

from engine.errors import SubnetScopeError
from engine.runtime import hub_reachable

C4 = "c4"
RTP_TOXIC = "rtp-toxic"
WIKITEXT2 = "wikitext2-test"
SHUFFLE_BUFFER = 10_000  # seed 002: dataset.shuffle(seed, buffer_size=10000), not random.seed
TOXICITY_THRESHOLD = 0.9


def hub_offline() -> bool:
    return any(
        os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE")
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _load(name: str, *args: Any, **kwargs: Any):
    import datasets

    if not hub_offline() and not hub_reachable():
        raise SubnetScopeError(
            f"cannot load '{name}': the Hugging Face hub is unreachable (set HF_HUB_OFFLINE=1 to "
            "use a copy in the local hub cache)"
        )
    try:
        return datasets.load_dataset(name, *args, **kwargs)
    except Exception as exc:  # the hub client raises many types: offline, 404, gated
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SubnetScopeError(f"cannot load '{name}' from the hub ({detail})") from exc


def _take(rows: Iterable[str], limit: int | None) -> list[str]:
    return list(itertools.islice(rows, limit)) if limit is not None else list(rows)


def c4(limit: int | None, seed: int | None) -> list[str]:
    """C4 English, streamed and shuffled with the seed (a 10,000-document buffer)."""
    stream = _load("allenai/c4", "en", split="train", streaming=True)
    stream = stream.shuffle(seed=seed or 0, buffer_size=SHUFFLE_BUFFER)
    return _take((row["text"] for row in stream), limit if limit is not None else 1000)


def rtp_toxic(limit: int | None, seed: int | None) -> list[str]:
    """RealToxicityPrompts' prompts whose own toxicity is ≥ 0.9 (seed 002's documented proxy for
    prompts that elicit toxic completions)."""
    data = _load("allenai/real-toxicity-prompts", split="train")
    if seed is not None:
        data = data.shuffle(seed=seed)
    prompts = (
        row["prompt"]["text"]
        for row in data
        if (row["prompt"].get("toxicity") or 0.0) >= TOXICITY_THRESHOLD
    )
    return _take(prompts, limit)


def wikitext2_test(limit: int | None, seed: int | None) -> list[str]:
    """WikiText-2 (raw) test split as one document, joined exactly as the transformers perplexity
    recipe does (`"\n\n".join(test["text"])`, empty rows included), so token counts and
    perplexities line up with numbers computed that way."""
    data = _load("wikitext", "wikitext-2-raw-v1", split="test")
    return ["\n\n".join(row["text"] for row in data)]


HUB_RECIPES: dict[str, Callable[[int | None, int | None], list[str]]] = {
    C4: c4,
    RTP_TOXIC: rtp_toxic,
    WIKITEXT2: wikitext2_test,
}
