"""Live pruning on the shared model: the same prompts with and without a pruning mask, each
completion's toxicity, and a quick perplexity estimate — all per call, nothing mutated."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from engine.attribution.toxicity import get_scorer
from engine.models import LoadedModel, NeuronMask


@dataclass(frozen=True)
class LiveResult:
    completions: pd.DataFrame  # prompt, unpruned, unpruned_toxicity, pruned, pruned_toxicity
    scorer: str
    base_ppl: float
    pruned_ppl: float
    tokens_scored: int


def live_pruning(
    loaded: LoadedModel,
    mask: NeuronMask | None,
    prompts: list[str],
    texts: list[str],
    *,
    max_new_tokens: int = 24,
    scorer: str = "auto",
    max_length: int = 128,
) -> LiveResult:
    from engine.evaluation.perplexity import texts_perplexity
    from engine.models import apply_mask, generate_text

    chosen = get_scorer(scorer)
    base = [
        generate_text(loaded, p, max_new_tokens=max_new_tokens, chat=False).text for p in prompts
    ]
    pruned = [
        generate_text(loaded, p, max_new_tokens=max_new_tokens, chat=False, mask=mask).text
        for p in prompts
    ]
    scores = chosen.score(base + pruned)
    table = pd.DataFrame(
        {
            "prompt": prompts,
            "unpruned": base,
            "unpruned_toxicity": scores[: len(prompts)],
            "pruned": pruned,
            "pruned_toxicity": scores[len(prompts) :],
        }
    )
    base_ppl = texts_perplexity(loaded.model, loaded.tokenizer, texts, max_length=max_length)
    with apply_mask(loaded, mask):
        pruned_ppl = texts_perplexity(loaded.model, loaded.tokenizer, texts, max_length=max_length)
    return LiveResult(
        table, chosen.name, base_ppl.perplexity, pruned_ppl.perplexity, base_ppl.tokens
    )
