"""Wanda scores |W| · ‖X‖₂ of every up_proj weight (Sun et al. 2023), summed per neuron.

‖X‖₂ is the norm of the up projection's input feature over ALL tokens concatenated — not a mean
of per-sample norms (seed 002's bug fix: with N copies of one text the norm grows by √N).

Precision: the forward runs in the model's own dtype (bf16 / fp16 included: that is the model whose
neurons are scored); each layer's sum of squares accumulates in float64 on that layer's own device
(float32 on Apple MPS, which has no float64), and |W| · ‖X‖₂ is computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from engine.attribution.scores import AttributionScores
from engine.errors import SubnetScopeError
from engine.models import LoadedModel
from engine.models.devices import accumulation_dtype, input_device
from engine.models.hooks import Hook, scoped_hooks


def input_norms(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    max_length: int = 128,
    on_sample: Callable[[int, int], None] | None = None,
) -> tuple[dict[int, torch.Tensor], int]:
    """‖X_j‖₂ of every up-projection input feature j over all tokens of all texts, per layer."""
    arch = loaded.architecture
    if any(block.up is None for block in arch.blocks):
        raise SubnetScopeError(f"Wanda needs the up projections, which {arch.family} lacks here")
    squares: dict[int, torch.Tensor] = {}

    def make_hook(layer: int):
        def hook(module, args):
            x = args[0].detach()  # (batch, seq, hidden)
            x = x.to(accumulation_dtype(x.device)).reshape(-1, x.shape[-1])  # (tokens, hidden)
            total = x.pow(2).sum(0)  # (hidden,) on the layer's device: no sync per layer
            squares[layer] = squares[layer] + total if layer in squares else total

        return hook

    hooks: list[Hook] = [
        (loaded.model.get_submodule(block.up), "pre", make_hook(layer))
        for layer, block in enumerate(arch.blocks)
    ]
    tokens = 0
    device = input_device(loaded.model)
    with scoped_hooks(loaded, hooks, name="Wanda"):
        for i, text in enumerate(texts):
            ids = loaded.tokenizer(
                text, return_tensors="pt", truncation=True, max_length=max_length
            )
            with torch.inference_mode():
                loaded.model(input_ids=ids["input_ids"].to(device))
            tokens += int(ids["input_ids"].shape[1])
            if on_sample is not None:
                on_sample(i + 1, len(texts))
    empty = torch.zeros(arch.hidden_size, dtype=torch.float64)  # no text reached a layer
    return {
        layer: squares.get(layer, empty).cpu().double().sqrt().float()
        for layer in range(arch.num_layers)
    }, tokens


def up_weight(loaded: LoadedModel, layer: int) -> torch.Tensor:
    """The layer's up-projection weight as (neurons, hidden), whatever the storage order."""
    weight = loaded.model.get_submodule(loaded.architecture.blocks[layer].up).weight.detach()
    return weight.T if loaded.architecture.transposed_weights else weight


def wanda_scores(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    max_length: int = 128,
    keep_weights: bool = False,
    on_sample: Callable[[int, int], None] | None = None,
) -> AttributionScores:
    """Neuron score = Σ_j |W_ij| · ‖X_j‖₂ over the up projection's row of neuron i."""
    norms, tokens = input_norms(loaded, texts, max_length=max_length, on_sample=on_sample)
    neuron, extra = {}, {}
    for layer, norm in norms.items():
        scores = up_weight(loaded, layer).float().abs().cpu() * norm  # (neurons, hidden)
        neuron[layer] = scores.sum(1)
        if keep_weights:
            extra[f"weight.{layer}"] = scores
    meta = {"samples": len(texts), "tokens": tokens, "max_length": max_length}
    return AttributionScores("wanda", neuron, meta, extra)
