"""The SBD training objective (arXiv 2509.04185 eq. 13–14, Alg. 1, Fig. 9).

Input: each sequence (L tokens) followed by a corrupted copy, both halves at position ids
0..L-1. One η ~ U(0, 1) per sequence masks each token of the copy independently with
probability η. The loss is one mean cross-entropy over the concatenated labels: next-token
targets at every clean position, and the original token at every masked slot of a full block
(the tail after the last full block of k gets none). No 1/η weighting, no mixing coefficient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.models.loading import LoadedModel
from engine.models.sbd_masks import block_attention, block_index, training_keep

IGNORE = -100


@dataclass(frozen=True)
class SBDBatch:
    input_ids: torch.Tensor  # (B, 2L): clean, then corrupted
    position_ids: torch.Tensor  # (1, 2L): 0..L-1 twice
    keep: torch.Tensor  # (B, 1, 2L, 2L) bool
    ntp_labels: torch.Tensor  # (B, 2L): next tokens on the clean half, else IGNORE
    mask_labels: torch.Tensor  # (B, 2L): originals at masked slots of full blocks, else IGNORE
    block: int


def encode(texts: Sequence[str], tokenizer, max_length: int, eos_id: int) -> list[list[int]]:
    """Token ids of each text, truncated to max_length − 1, with the end-of-sequence token added
    (so the model learns where an answer stops)."""
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"][: max_length - 1]
        if not ids or ids[-1] != eos_id:
            ids = [*ids, eos_id]
        out.append(ids)
    return out


def prompt_lengths(
    sequences: Sequence[Sequence[int]], prompts: Sequence[str], tokenizer
) -> list[int]:
    """Where each sequence's response starts: the length of its prompt's tokens when the
    sequence begins with exactly those tokens, else 0 (the whole sequence is scored)."""
    starts = []
    for seq, prompt in zip(sequences, prompts, strict=True):
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"] if prompt else []
        fits = 0 < len(ids) < len(seq) and list(seq[: len(ids)]) == list(ids)
        starts.append(len(ids) if fits else 0)
    return starts


def sbd_batch(
    sequences: Sequence[Sequence[int]],
    *,
    pad_id: int,
    mask_id: int,
    block: int,
    generator: torch.Generator,
    starts: Sequence[int] | None = None,
) -> SBDBatch:
    """The batch of eq. 13: right-padded sequences, their corrupted copies, masks and labels.
    With `starts`, only positions from a sequence's start on are masked and scored (both terms:
    the response of an instruction record, as TRL's SFT scores completions only)."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    valid = torch.zeros((len(sequences), length), dtype=torch.bool)
    scored = torch.zeros((len(sequences), length), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        valid[row, : len(seq)] = True
        scored[row, (starts[row] if starts else 0) : len(seq)] = True
    eta = torch.rand((len(sequences), 1), generator=generator)
    masked = (torch.rand(ids.shape, generator=generator) < eta) & scored
    corrupted = ids.masked_fill(masked, mask_id)
    ntp = torch.full_like(ids, IGNORE)
    ntp[:, :-1] = ids[:, 1:].masked_fill(~scored[:, 1:], IGNORE)
    in_block = block_index(length, block)[None, :] >= 0
    targets = ids.masked_fill(~(masked & in_block), IGNORE)
    ignore = torch.full_like(ids, IGNORE)
    positions = torch.arange(length)
    return SBDBatch(
        input_ids=torch.cat([ids, corrupted], dim=1),
        position_ids=torch.cat([positions, positions])[None],
        keep=training_keep(valid, block),
        ntp_labels=torch.cat([ntp, ignore], dim=1),
        mask_labels=torch.cat([ignore, targets], dim=1),
        block=block,
    )


@dataclass(frozen=True)
class SBDLoss:
    loss: torch.Tensor  # eq. 14: the mean over every labelled position of both terms
    ntp: float  # mean next-token cross-entropy (clean half)
    masked: float  # mean masked-token cross-entropy (nan when nothing was masked)
    ntp_count: int
    masked_count: int


def sbd_loss(loaded: LoadedModel, batch: SBDBatch) -> SBDLoss:
    """Forward [clean ; corrupted] through the SBD mask and score both terms."""
    device = loaded.device
    positions = batch.position_ids[0]

    def keep_for(q_len: int, k_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.keep, positions

    with block_attention(loaded, keep_for):
        logits = loaded.model(
            input_ids=batch.input_ids.to(device),
            position_ids=batch.position_ids.to(device),
            use_cache=False,
        ).logits  # (B, 2L, V)
    flat = logits.float().reshape(-1, logits.shape[-1])
    ntp_labels = batch.ntp_labels.reshape(-1).to(device)
    mask_labels = batch.mask_labels.reshape(-1).to(device)
    ntp_sum = F.cross_entropy(flat, ntp_labels, ignore_index=IGNORE, reduction="sum")
    mask_sum = F.cross_entropy(flat, mask_labels, ignore_index=IGNORE, reduction="sum")
    ntp_count = int((ntp_labels != IGNORE).sum())
    mask_count = int((mask_labels != IGNORE).sum())
    loss = (ntp_sum + mask_sum) / max(ntp_count + mask_count, 1)
    return SBDLoss(
        loss=loss,
        ntp=float(ntp_sum.detach()) / max(ntp_count, 1),
        masked=float(mask_sum.detach()) / mask_count if mask_count else float("nan"),
        ntp_count=ntp_count,
        masked_count=mask_count,
    )
