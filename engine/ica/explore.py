"""Tables that explain components: key-neuron counts, overlaps, top tokens, time courses."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from engine.errors import SubnetScopeError
from engine.ica.artifacts import ComponentArrays
from engine.ica.capture import capture_activations
from engine.ica.masks import SpaceMask, apply_space_mask, switched_off
from engine.ica.templates import Templates
from engine.models import LoadedModel


def key_neuron_counts(templates: Templates) -> pd.DataFrame:
    """One row per (component, layer): how many key neurons the component has there."""
    rows = [
        {"component": c, "layer": layer, "neurons": len(templates.components[c].get(layer, ()))}
        for c in templates.component_ids
        for layer in templates.layers
    ]
    return pd.DataFrame(rows, columns=["component", "layer", "neurons"])


def late_layer_share(templates: Templates, last: int = 3) -> float:
    """Mean over components of the share of their key channels in the last `last` covered layers
    (how much the loud late layers dominate: the issue's 49 % raw vs 14 % standardized)."""
    late = set(templates.layers[-last:])
    shares = [
        sum(len(templates.components[c].get(layer, ())) for layer in late) / templates.size(c)
        for c in templates.component_ids
        if templates.size(c)
    ]
    return float(np.mean(shares)) if shares else float("nan")


def jaccard_overlaps(templates: Templates) -> pd.DataFrame:
    """Jaccard index |A ∩ B| / |A ∪ B| of every pair of components' key-neuron sets (both
    orders, diagonal included) — the long form an Altair heatmap wants."""
    sets = {c: set(templates.neurons(c)) for c in templates.component_ids}
    rows = []
    for a in sets:
        rows.append({"a": a, "b": a, "jaccard": 1.0, "shared": len(sets[a])})
    for a, b in combinations(sets, 2):
        shared = len(sets[a] & sets[b])
        union = len(sets[a] | sets[b])
        value = shared / union if union else 0.0
        rows += [
            {"a": a, "b": b, "jaccard": value, "shared": shared},
            {"a": b, "b": a, "jaccard": value, "shared": shared},
        ]
    return pd.DataFrame(rows, columns=["a", "b", "jaccard", "shared"])


def component_neurons(
    templates: Templates, arrays: ComponentArrays | None, component: int
) -> pd.DataFrame:
    """The component's key channels (`neuron` in the templates' space: an intermediate neuron for
    mlp_neurons, a hidden channel for mlp_out) with mixing weight and z-score, strongest first."""
    pairs = templates.neurons(component)
    table = pd.DataFrame(pairs, columns=["layer", "neuron"])
    widths = templates.layer_widths()
    if arrays is None or table.empty or widths is None:
        return table
    starts = np.cumsum([0] + [widths[layer] for layer in templates.layers])
    offsets = dict(zip(templates.layers, starts.tolist(), strict=False))
    column = arrays.mixing[:, component].astype(np.float64)
    flat = np.array([offsets[layer] + n for layer, n in pairs], dtype=np.int64)
    table["weight"] = column[flat]
    table["z"] = (table["weight"] - column.mean()) / (column.std() or 1.0)
    return table.reindex(table["weight"].abs().sort_values(ascending=False).index).reset_index(
        drop=True
    )


def _decode(tokenizer, ids: np.ndarray) -> list[str]:
    return [tokenizer.decode([int(i)]) for i in ids]


def top_tokens(
    arrays: ComponentArrays, tokenizer, component: int, *, n: int = 20, context: int = 8
) -> pd.DataFrame:
    """The captured tokens where the component's source is highest, with a snippet around each."""
    if not 0 <= component < arrays.sources.shape[1]:
        raise SubnetScopeError(f"no component {component}: there are {arrays.sources.shape[1]}")
    values = arrays.sources[:, component]
    best = np.argsort(-values, kind="stable")[:n]
    rows = []
    for row in best:
        text, pos = int(arrays.text_index[row]), int(arrays.position[row])
        same = np.flatnonzero(arrays.text_index == text)
        start, stop = max(0, pos - context), pos + 3
        window = arrays.token_ids[
            same[(arrays.position[same] >= start) & (arrays.position[same] < stop)]
        ]
        pieces = _decode(tokenizer, window)
        focus = pos - start
        snippet = (
            "".join(pieces[:focus]) + "[[" + pieces[focus] + "]]" + "".join(pieces[focus + 1 :])
        )
        rows.append(
            {
                "value": float(values[row]),
                "token": pieces[focus],
                "snippet": snippet.replace("\n", "⏎"),
                "dataset": arrays.datasets[int(arrays.text_dataset[text])],
                "text": text,
                "position": pos,
            }
        )
    return pd.DataFrame(rows)


def dataset_means(arrays: ComponentArrays) -> pd.DataFrame:
    """Mean source value of every component on each dataset's tokens (which source it prefers)."""
    per_token = arrays.text_dataset[arrays.text_index]
    rows = []
    for d, name in enumerate(arrays.datasets):
        chosen = per_token == d
        if not chosen.any():
            continue
        means = arrays.sources[chosen].mean(axis=0)
        rows += [{"component": c, "dataset": name, "mean": float(m)} for c, m in enumerate(means)]
    return pd.DataFrame(rows, columns=["component", "dataset", "mean"])


def time_course(
    loaded: LoadedModel,
    templates: Templates,
    arrays: ComponentArrays,
    text: str,
    *,
    max_length: int = 256,
) -> pd.DataFrame:
    """Each component's source over a new text's tokens: (position, token, component, value)."""
    templates.validate(loaded.architecture, loaded.display_name)
    if not text.strip():
        raise SubnetScopeError("type some text to see the components' time courses")
    acts = capture_activations(
        loaded, [text], templates.layers, max_length=max_length, space=templates.space
    )
    sources = arrays.transform(acts.matrix)  # (tokens, k)
    tokens = _decode(loaded.tokenizer, acts.token_ids)
    rows = [
        {"position": t, "token": tokens[t], "component": c, "value": float(sources[t, c])}
        for t in range(sources.shape[0])
        for c in range(sources.shape[1])
    ]
    return pd.DataFrame(rows, columns=["position", "token", "component", "value"])


def held_out_texts(
    arrays: ComponentArrays | None, source: str = "demo-general", n: int = 8, seed: int = 1
) -> list[str]:
    """`n` texts of `source` that the decomposition did not see (all of them if none are left)."""
    from engine.data import load_texts, sample_texts

    texts = load_texts(source)
    seen = set(arrays.texts) if arrays is not None else set()
    unseen = [t for t in texts if t not in seen] or texts
    return sample_texts(unseen, n, seed)


@dataclass(frozen=True)
class LiveComparison:
    """The same prompt and held-out texts through the model as it is and under a mask."""

    base_text: str
    masked_text: str
    base_ppl: float
    masked_ppl: float
    tokens_scored: int
    masked_neurons: int


def live_comparison(
    loaded: LoadedModel,
    mask: SpaceMask,
    prompt: str,
    texts: list[str],
    *,
    max_new_tokens: int = 40,
    max_length: int = 128,
) -> LiveComparison:
    """Greedy generations and perplexities with and without `mask`; the shared model is left as
    it was (the mask holds for these calls only)."""
    from engine.evaluation.perplexity import texts_perplexity
    from engine.models import generate_text

    base = generate_text(loaded, prompt, max_new_tokens=max_new_tokens)
    base_ppl = texts_perplexity(loaded.model, loaded.tokenizer, texts, max_length=max_length)
    with apply_space_mask(loaded, mask):
        masked = generate_text(loaded, prompt, max_new_tokens=max_new_tokens)
        masked_ppl = texts_perplexity(loaded.model, loaded.tokenizer, texts, max_length=max_length)
    return LiveComparison(
        base_text=base.text,
        masked_text=masked.text,
        base_ppl=base_ppl.perplexity,
        masked_ppl=masked_ppl.perplexity,
        tokens_scored=base_ppl.tokens,
        masked_neurons=switched_off(mask, loaded.architecture),
    )
