"""The entropy-bounded (EB) reveal rule of Set Block Decoding (arXiv 2509.04185, eq. 8 and 18).

Among the still-masked slots, sorted by the entropy of their predicted distribution (lowest
first), reveal the largest s ≥ 1 whose s − 1 smallest entropies sum to at most γ; equivalently
Σ_{j≤s} H_j − max_{j≤s} H_j ≤ γ. Entropies are in nats (the paper does not state the base).
Every revealed slot takes its argmax token (the paper's temperature 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.errors import SubnetScopeError


@dataclass(frozen=True)
class Reveal:
    slot: int  # the block slot (0-based)
    token: int
    entropy: float  # nats


def token_entropies(logits: torch.Tensor) -> torch.Tensor:
    """(n,) entropy in nats of softmax(logits) per row of (n, vocab), computed in float32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    # p·log p is 0 where p = 0 (a -inf logit), not 0·(-inf) = NaN.
    terms = torch.where(logp > float("-inf"), logp.exp() * logp, torch.zeros_like(logp))
    return (-terms.sum(dim=-1)).clamp_min(0.0)


def reveal_count(sorted_entropies: list[float], threshold: float) -> int:
    """The largest s ≥ 1 with sum(sorted_entropies[: s - 1]) ≤ threshold."""
    if not sorted_entropies:
        return 0
    total, count = 0.0, 1
    for entropy in sorted_entropies[:-1]:
        total += entropy
        if total > threshold:
            break
        count += 1
    return count


def check_threshold(threshold: float) -> float:
    value = float(threshold)
    if not value >= 0:  # also rejects NaN
        raise SubnetScopeError(f"the entropy threshold γ must be ≥ 0 nats, not {threshold}")
    return value


def choose(logits: torch.Tensor, slots: list[int], threshold: float) -> list[Reveal]:
    """The slots to reveal this pass: `logits` (len(slots), vocab) are the masked slots' logits.
    Ties in entropy go to the earlier slot, so the choice is deterministic."""
    if logits.shape[0] != len(slots):
        raise ValueError("one row of logits per masked slot")
    entropies = token_entropies(logits).tolist()
    order = sorted(range(len(slots)), key=lambda i: (entropies[i], slots[i]))
    count = reveal_count([entropies[i] for i in order], check_threshold(threshold))
    tokens = logits.argmax(dim=-1).tolist()
    return [Reveal(slots[i], int(tokens[i]), entropies[i]) for i in order[:count]]
