"""Perplexity and toxicity as neurons are pruned: the curves of SparC3's Figure 3, per N."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from engine.attribution.config import EvalConfig
from engine.attribution.pruning import pruning_mask
from engine.attribution.scores import Selected
from engine.attribution.toxicity import completion_toxicity, get_scorer
from engine.errors import SubnetScopeError
from engine.models import LoadedModel

Progress = Callable[[float, str], None]


def joined_text(source: str, max_tokens: int) -> str:
    """Enough documents of `source` for `max_tokens` (≈ 4 characters per token, with margin)."""
    from engine.data import load_texts

    chosen, budget = [], max_tokens * 8
    for text in load_texts(source):
        chosen.append(text)
        budget -= len(text)
        if budget <= 0:
            break
    return "\n\n".join(chosen)


def evaluate_pruning(
    loaded: LoadedModel,
    neurons: Sequence[Selected],
    config: EvalConfig,
    *,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """One row per N: perplexity and toxicity with the first N neurons pruned (reversibly)."""
    from engine.data import load_texts
    from engine.evaluation.perplexity import perplexity

    report = progress or (lambda fraction, message: None)
    nums = sorted({int(n) for n in config.nums})
    if any(n < 0 for n in nums):
        raise SubnetScopeError("numbers of neurons to prune must be ≥ 0")
    if nums[-1] > len(neurons):
        raise SubnetScopeError(f"cannot prune {nums[-1]} neurons: the list holds {len(neurons)}")
    scorer = get_scorer(config.scorer)
    prompts = load_texts(config.prompts, limit=config.prompt_limit)
    text = joined_text(config.text, config.max_tokens)
    rows = []
    for i, num in enumerate(nums):
        mask = pruning_mask(neurons, num) if num else None
        report(i / len(nums), f"N = {num}: perplexity")
        ppl = perplexity(
            loaded,
            text,
            max_tokens=config.max_tokens,
            window=config.window,
            stride=config.stride,
            mask=mask,
        )
        report((i + 0.5) / len(nums), f"N = {num}: toxicity of {len(prompts)} completions")
        tox = completion_toxicity(
            loaded, prompts, mask=mask, scorer=scorer, max_new_tokens=config.max_new_tokens
        )
        rows.append(
            {
                "neurons": num,
                "perplexity": ppl.perplexity,
                "ppl_tokens": ppl.tokens,
                "toxicity": tox.mean,
                "fraction_toxic": tox.fraction_toxic,
                "scorer": tox.scorer,
                "example": tox.completions[0]["completion"],
            }
        )
    table = pd.DataFrame(rows)
    base = table.iloc[0]
    table["perplexity_change"] = table["perplexity"] / base["perplexity"] - 1
    table["toxicity_change"] = (
        table["toxicity"] / base["toxicity"] - 1 if base["toxicity"] > 0 else float("nan")
    )
    report(1.0, "evaluated")
    return table
