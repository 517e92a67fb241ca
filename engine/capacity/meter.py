"""Memorized bits of a model on uniformly random token sequences (Morris et al., arXiv
2505.24832 §3): the data's exact entropy, the model's code length of it, and their difference.

The data: N sequences of S tokens drawn i.i.d. uniformly from V ids, so H(X) = N·S·log₂V bits
exactly. Each sequence is read after a BOS id (= V), so every one of its S tokens is predicted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.errors import SubnetScopeError

# (batch, S) token ids -> (batch, S, V) logits; position i may read ids[:, :i] only (a causal
# model), except in tests that plant an oracle.
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def random_sequences(n: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    """(n, length) token ids, i.i.d. uniform over 0..vocab-1, from their own seeded generator."""
    if n < 1 or length < 1 or vocab < 2:
        raise SubnetScopeError(
            f"random data needs N ≥ 1, S ≥ 1 and V ≥ 2, not N={n}, S={length}, V={vocab}"
        )
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, length), generator=generator)


def dataset_bits(n: int, length: int, vocab: int) -> float:
    """H(X) = N·S·log₂V: the entropy of the data in bits (exact: every token is uniform)."""
    return n * length * math.log2(vocab)


def with_bos(ids: torch.Tensor, bos: int) -> torch.Tensor:
    """The model's inputs for predicting every token of `ids`: BOS, then all but the last token."""
    start = torch.full_like(ids[:, :1], bos)
    return torch.cat([start, ids[:, :-1]], dim=1)  # (batch, S)


def sequence_nll_bits(logits_fn: LogitsFn, ids: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """−log₂ p(x | θ̂) of each sequence (float64, shape (N,)): the model's code length of it."""
    out = []
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        # float64 log-softmax: a float32 one is off by ~1e-8 per token (ln V rounded), which a
        # sum over millions of tokens would show as memorized bits that are not there.
        logits = logits_fn(chunk).double()  # (b, S, V)
        nats = F.cross_entropy(logits.transpose(1, 2), chunk, reduction="none")  # (b, S)
        out.append(nats.sum(dim=1) / math.log(2))
    return torch.cat(out)


@dataclass(frozen=True)
class Memorized:
    """What a model holds of one random dataset, in bits."""

    data_bits: float  # H(X) = N·S·log₂V
    nll_bits: float  # Σ −log₂ p(x | θ̂) over the training set
    memorized_bits: float  # H(X) − Σ NLL: the paper's dataset-level number (may be < 0)
    mem_u_bits: float  # Σ max(0, log₂p(x|θ̂) − log₂p(x|uniform)): per-sample, a lower bound

    def as_row(self) -> dict[str, float]:
        return {
            "data_bits": self.data_bits,
            "nll_bits": self.nll_bits,
            "memorized_bits": self.memorized_bits,
            "mem_u_bits": self.mem_u_bits,
        }


def memorized_bits(
    logits_fn: LogitsFn, ids: torch.Tensor, vocab: int, batch: int = 64
) -> Memorized:
    """Measure a model (any logits function) on its training sequences `ids` (N, S)."""
    if ids.ndim != 2 or not len(ids):
        raise SubnetScopeError(f"expected (N, S) token ids, got shape {tuple(ids.shape)}")
    n, length = ids.shape
    per_sequence = sequence_nll_bits(logits_fn, ids, batch)  # (N,)
    uniform = length * math.log2(vocab)  # −log₂ p(x | uniform) of every sequence
    total = dataset_bits(n, length, vocab)
    nll = float(per_sequence.sum())
    return Memorized(
        data_bits=total,
        nll_bits=nll,
        memorized_bits=total - nll,
        mem_u_bits=float((uniform - per_sequence).clamp(min=0).sum()),
    )


def model_logits(model: torch.nn.Module, vocab: int) -> LogitsFn:
    """A GPT-2 with V + 1 ids as a logits function over the data's V ids: BOS (id V) goes in
    front, and its own logit is dropped, since BOS never occurs in the data (the code length is
    over the data's alphabet, as the uniform reference's is)."""

    def logits(ids: torch.Tensor) -> torch.Tensor:
        out = model(input_ids=with_bos(ids, vocab)).logits  # (b, S, V + 1)
        return out[..., :vocab]

    return logits
