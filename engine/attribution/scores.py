"""Neuron scores on disk, averaged over seeds, differential scores and top-N selection (SparC3).

A scores file is safetensors: `neuron.<layer>` (neurons,) float32 for every MLP layer, optionally
`activation.<layer>` and `weight.<layer>` (neurons, hidden), and string metadata (method, model,
samples, seed, tokens, neurons_per_layer). Scores are per up_proj neuron, the index the
foundation's masks use.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.atomic import save_safetensors_atomic
from engine.attribution.config import NORMALIZE, SCORES
from engine.errors import SubnetScopeError


@dataclass
class AttributionScores:
    """Scores of every up_proj neuron, layer by layer, and how they were made."""

    method: str  # lrp | wanda | a combination
    neuron: dict[int, torch.Tensor]  # layer -> (neurons,) float32
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # activation.L, weight.L

    @property
    def layers(self) -> list[int]:
        return sorted(self.neuron)

    def total(self) -> float:
        return float(sum(v.double().sum() for v in self.neuron.values()))

    def flat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(layer, neuron, score) of every neuron, concatenated over layers."""
        layers, neurons, scores = [], [], []
        for layer in self.layers:
            values = self.neuron[layer]
            layers.append(torch.full_like(values, layer, dtype=torch.long))
            neurons.append(torch.arange(values.numel()))
            scores.append(values.float())
        return torch.cat(layers), torch.cat(neurons), torch.cat(scores)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tensors = {f"neuron.{layer}": v.float().contiguous() for layer, v in self.neuron.items()}
        tensors |= {k: v.float().contiguous() for k, v in self.extra.items()}
        meta = {"method": self.method, "metadata": json.dumps(self.metadata, default=str)}
        save_safetensors_atomic(path, tensors, meta)
        return path


def load_scores(path: str | Path) -> AttributionScores:
    from safetensors import safe_open

    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "scores.safetensors"
    if not path.is_file():
        raise SubnetScopeError(f"no attribution scores at '{path}'")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    except Exception as exc:  # safetensors raises its own error types for a corrupt file
        raise SubnetScopeError(f"cannot read '{path}' as a scores file ({exc})") from None
    neuron = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("neuron.")}
    if not neuron:
        raise SubnetScopeError(f"'{path}' holds no neuron scores (neuron.<layer> tensors)")
    extra = {k: v for k, v in tensors.items() if not k.startswith("neuron.")}
    metadata = json.loads(meta.get("metadata", "{}"))
    metadata["path"] = str(path)
    return AttributionScores(meta.get("method", "unknown"), neuron, metadata, extra)


def _check_same_shape(sets: list[AttributionScores]) -> None:
    first = sets[0]
    for other in sets[1:]:
        if other.layers != first.layers or any(
            other.neuron[layer].shape != first.neuron[layer].shape for layer in first.layers
        ):
            raise SubnetScopeError(
                "the score files cover different layers or widths: they come from different "
                f"models ({first.metadata.get('model')} and {other.metadata.get('model')})"
            )
        if other.method != first.method:
            raise SubnetScopeError(
                f"cannot combine {first.method} and {other.method} scores; use one method"
            )


def average_scores(sets: list[AttributionScores]) -> AttributionScores:
    """The mean over seeds (seed 002's load_and_average_seeds)."""
    if not sets:
        raise SubnetScopeError("no score files to average")
    _check_same_shape(sets)
    neuron = {
        layer: torch.stack([s.neuron[layer].float() for s in sets]).mean(0)
        for layer in sets[0].layers
    }
    shared = set.intersection(*(set(s.extra) for s in sets))
    extra = {k: torch.stack([s.extra[k].float() for s in sets]).mean(0) for k in sorted(shared)}
    metadata = dict(sets[0].metadata)
    metadata["averaged"] = [s.metadata.get("path") or s.metadata.get("seed") for s in sets]
    metadata["tokens"] = sum(int(s.metadata.get("tokens", 0)) for s in sets) / len(sets)
    return AttributionScores(sets[0].method, neuron, metadata, extra)


def scored_by(scores: AttributionScores, kind: str) -> AttributionScores:
    """The neuron scores `kind` names (see SCORES); "relevance" needs LRP's activation.<layer>.

    The absolute value per weight counts relevance that cancels within a neuron's row as if it all
    flowed one way: on the planted demo the planted neurons' gross Σ|W ⊙ ∂W| on general text is
    2.5× the average neuron's while their net relevance is small and of either sign, so by weights
    they look general and their differential is not negative (issue 16, fix 8)."""
    if kind not in SCORES:
        raise SubnetScopeError(f"unknown score '{kind}'; use one of {', '.join(SCORES)}")
    if kind == "weights":
        return scores
    missing = [layer for layer in scores.layers if f"activation.{layer}" not in scores.extra]
    if missing:
        raise SubnetScopeError(
            f"these {scores.method} scores hold no signed neuron relevance (activation.<layer>); "
            "score relevance needs LRP scores"
        )
    neuron = {layer: scores.extra[f"activation.{layer}"].float().abs() for layer in scores.layers}
    return AttributionScores(
        scores.method, neuron, {**scores.metadata, "score": kind}, scores.extra
    )


def normalized(scores: AttributionScores, how: str) -> dict[int, torch.Tensor]:
    """Scores made comparable across sample sets of different size.

    - sum: each neuron's share of the set's total relevance (an option, for when general text
      and a short prompt set explain targets of very different magnitude; the default is none)
    - tokens: per scored token
    - none: raw, as seed 002 subtracts them (a general set of many more tokens than the target
      set then dominates, so the most negative differences are neurons that general text barely
      uses — pruning them spares perplexity)
    - ratio: shares, compared as logs by `differential`
    """
    if how not in NORMALIZE:
        raise SubnetScopeError(f"unknown normalization '{how}'; use one of {', '.join(NORMALIZE)}")
    if how == "none":
        return {layer: v.float() for layer, v in scores.neuron.items()}
    if how == "ratio":
        how = "sum"
    if how == "tokens":
        denominator = float(scores.metadata.get("tokens") or 0)
        if denominator <= 0:
            raise SubnetScopeError("these scores do not say how many tokens made them")
    else:
        denominator = scores.total()
        if denominator == 0:
            raise SubnetScopeError("these scores are all zero")
    return {layer: (v.double() / denominator).float() for layer, v in scores.neuron.items()}


def differential(
    general: AttributionScores, target: AttributionScores, normalize: str = "none"
) -> AttributionScores:
    """R_diff = R_general − R_target: most negative = specific to the target behaviour."""
    _check_same_shape([general, target])
    g, t = normalized(general, normalize), normalized(target, normalize)
    if normalize == "ratio":  # log(g + ε) − log(t + ε), ε = half an average neuron's share
        eps = 0.5 / sum(v.numel() for v in g.values())
        values = {layer: (g[layer] + eps).log() - (t[layer] + eps).log() for layer in g}
    else:
        values = {layer: g[layer] - t[layer] for layer in general.layers}
    return AttributionScores(
        f"{general.method}-differential",
        values,
        {"general": general.metadata, "target": target.metadata, "normalize": normalize},
    )


@dataclass(frozen=True)
class Selected:
    layer: int
    neuron: int
    score: float


def select_neurons(
    diff: AttributionScores,
    num: int,
    *,
    per_layer: bool = False,
    layer_pattern: str | None = None,
    module_names: dict[int, str] | None = None,
) -> list[Selected]:
    """The `num` most negative differential scores (globally, or `num` in every layer), most
    negative first. `layer_pattern`: a regex over the up modules' names (`layers\\.1\\d\\.`)
    or layer numbers like '10-20'."""
    if num < 0:
        raise SubnetScopeError(f"cannot select {num} neurons")
    layers = _matching_layers(diff.layers, layer_pattern, module_names)
    chosen: list[Selected] = []
    if per_layer:
        for layer in layers:
            values = diff.neuron[layer]
            order = torch.argsort(values, stable=True)[:num]
            chosen += [Selected(layer, int(i), float(values[i])) for i in order]
        return sorted(chosen, key=lambda s: s.score)
    subset = AttributionScores(diff.method, {layer: diff.neuron[layer] for layer in layers})
    layer_ids, neurons, scores = subset.flat()
    order = torch.argsort(scores, stable=True)[:num]
    return [Selected(int(layer_ids[i]), int(neurons[i]), float(scores[i])) for i in order]


def _matching_layers(
    layers: list[int], pattern: str | None, names: dict[int, str] | None
) -> list[int]:
    if not pattern or pattern in ("up_proj", "mlp.up_proj", "c_fc"):
        return layers
    if re.fullmatch(r"[\d,\- ]+", pattern):
        from engine.models.layers import parse_layers

        wanted = set(parse_layers(pattern, max(layers) + 1))
        return [layer for layer in layers if layer in wanted]
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise SubnetScopeError(f"layer pattern '{pattern}' is not a valid regex ({exc})") from None
    names = names or {layer: f"layers.{layer}.mlp.up_proj" for layer in layers}
    matched = [layer for layer in layers if regex.search(names[layer])]
    if not matched:
        raise SubnetScopeError(f"layer pattern '{pattern}' matches no MLP layer")
    return matched
