"""FunctionalLoRA: generated A, B applied to the frozen shared model per call, differentiably.

LLGBM's `FunctionalLoRA` / `compute_delta_differentiable` (seed 004), through the project's one
hook primitive: `functional_lora` is `engine.lora.live.apply_lora` (forward hooks adding
s·(x Aᵀ) Bᵀ, scoped to the calling context, removed on exit), which keeps the autograd graph of
the factors. The base weights are never written and their `requires_grad` is never touched: the
graph reaches only the factors (and through them the generator's parameters).

v(M) runs the backbone without the LM head and reads its `last_hidden_state`: equal to the full
model's `hidden_states[-1]` (what `engine.lora.deltas.mean_last_state` reads) on GPT-2, Llama,
Qwen2, Gemma 3 and BERT, and skips the vocabulary projection. On Gemma 3n `hidden_states[-1]` is
the stack of AltUp streams; `last_hidden_state` is the model's real final state there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.errors import SubnetScopeError
from engine.lora.deltas import right_padded
from engine.lora.live import apply_lora
from engine.lora.lowrank import Factors
from engine.models.devices import input_device
from engine.models.loading import LoadedModel

MAX_LENGTH = 256  # as engine.lora.deltas (LLGBM reads up to 256 tokens per probe)


@dataclass
class ProbeBatch:
    """Probe texts tokenized once, right-padded, on the model's input device."""

    input_ids: Tensor  # (n, seq)
    attention_mask: Tensor  # (n, seq)
    last: Tensor  # (n,) index of each text's last real token


def probe_batch(
    loaded: LoadedModel, texts: Sequence[str], max_length: int = MAX_LENGTH
) -> ProbeBatch:
    """Tokenize `texts` (truncated to `max_length`) and pad them on the right, whatever the
    tokenizer's padding side: positions are those of the unpadded texts, so causal attention keeps
    pads out of every real token's state (as mean_last_state does)."""
    if not texts:
        raise SubnetScopeError("a probe batch needs at least one text")
    if max_length < 1:
        raise SubnetScopeError("max length must be at least 1")
    input_ids, attention, lengths = right_padded(loaded.tokenizer, texts, max_length)
    device = input_device(loaded.model)
    return ProbeBatch(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        last=torch.tensor(lengths, device=device) - 1,
    )


def to_factors(factors: Mapping[str, tuple[Tensor, Tensor]], scale: float) -> dict[str, Factors]:
    """{path: (A (r, d_in), B (d_out, r))} → {path: Factors} (no copy: the graph is kept)."""
    out = {}
    for path, (a, b) in factors.items():
        if a.ndim != 2 or b.ndim != 2:
            raise SubnetScopeError(
                f"'{path}': functional LoRA takes one adapter's A (r, d_in) and B (d_out, r), got "
                f"{tuple(a.shape)} and {tuple(b.shape)}; apply a batch one sample at a time"
            )
        out[path] = Factors(b=b, a=a, scale=scale)
    return out


@contextmanager
def functional_lora(
    loaded: LoadedModel, factors: Mapping[str, tuple[Tensor, Tensor]] | None, scale: float
) -> Iterator[None]:
    """Within this block, calls from this context see W + scale·B@A on each module, with autograd
    reaching A and B; other threads and sessions see the plain model, which is never written."""
    with apply_lora(loaded, to_factors(factors, scale) if factors else None):
        yield


def backbone(loaded: LoadedModel) -> nn.Module:
    """The model without its LM head (`base_model`: transformer, model, bert…)."""
    return getattr(loaded.model, "base_model", loaded.model)


def final_states(loaded: LoadedModel, batch: ProbeBatch) -> Tensor:
    """The backbone's last hidden state (n, seq, hidden) for the probe batch, in this grad mode."""
    out = backbone(loaded)(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    )
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def last_state(
    loaded: LoadedModel,
    batch: ProbeBatch,
    factors: Mapping[str, tuple[Tensor, Tensor]] | None = None,
    scale: float = 1.0,
) -> Tensor:
    """v(M): the mean over the probes of the last real token's final state, (hidden,) float32,
    differentiable with respect to `factors` (grad is enabled for this call whatever the caller's
    mode; the frozen weights take no part in the graph)."""
    with torch.enable_grad(), functional_lora(loaded, factors, scale):
        hidden = final_states(loaded, batch)  # (n, seq, hidden)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        states = hidden[rows, batch.last.to(hidden.device)]  # (n, hidden)
        return states.float().mean(dim=0)


def delta_differentiable(
    loaded: LoadedModel,
    batch: ProbeBatch,
    factors: Mapping[str, tuple[Tensor, Tensor]],
    scale: float,
    base: Tensor,
) -> Tensor:
    """Δ = v(M) − v(base), (hidden,) float32; `base` (cached once, DeltaCache) is a constant."""
    state = last_state(loaded, batch, factors, scale)
    return state - base.detach().to(state.device, torch.float32)
