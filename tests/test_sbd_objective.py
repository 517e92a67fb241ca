"""The SBD training objective: the batch of eq. 13, the loss of eq. 14, and that a corrupted
block in training sees exactly what the decoder's block sees at inference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.models import SBD_MASK_TOKEN, wrap_model
from engine.models.sbd_decoding import _Pass
from engine.models.sbd_masks import block_attention
from engine.sbd.objective import IGNORE, encode, sbd_batch, sbd_loss
from tests.tiny import char_tokenizer, tiny_model

FAMILIES = ("llama", "gpt2", "qwen2", "gemma3", "gemma3n")


def _with_mask_token(family: str):
    loaded = tiny_model(family)
    tokenizer = char_tokenizer.__wrapped__()  # a fresh one: the cached tokenizer is shared
    tokenizer.add_special_tokens({"additional_special_tokens": [SBD_MASK_TOKEN]})
    loaded.model.resize_token_embeddings(len(tokenizer))
    return wrap_model(loaded.model, tokenizer), tokenizer.convert_tokens_to_ids(SBD_MASK_TOKEN)


def test_batch_labels_and_corruption():
    sequences = [[5, 6, 7, 8, 9, 10, 11], [20, 21, 22, 23]]
    gen = torch.Generator().manual_seed(0)
    batch = sbd_batch(sequences, pad_id=0, mask_id=99, block=3, generator=gen)
    length = 7
    assert batch.input_ids.shape == (2, 2 * length)
    assert batch.position_ids.tolist() == [list(range(length)) * 2]
    clean, corrupted = batch.input_ids[:, :length], batch.input_ids[:, length:]
    assert clean[0].tolist() == sequences[0]
    assert clean[1].tolist() == [20, 21, 22, 23, 0, 0, 0]
    # NTP labels: the next clean token, none past a sequence's end, none on the corrupted half.
    assert batch.ntp_labels[0, :length].tolist() == [6, 7, 8, 9, 10, 11, IGNORE]
    assert batch.ntp_labels[1, :length].tolist() == [21, 22, 23] + [IGNORE] * 4
    assert (batch.ntp_labels[:, length:] == IGNORE).all()
    masked = corrupted == 99
    assert not masked[1, 4:].any()  # padding is never masked
    # Masked labels: the original token at masked slots of full blocks only (6 // 3 = 2 blocks).
    for row in range(2):
        for pos in range(length):
            label = int(batch.mask_labels[row, length + pos])
            if masked[row, pos] and pos < 6:
                assert label == int(clean[row, pos])
            else:
                assert label == IGNORE
            if not masked[row, pos]:
                assert corrupted[row, pos] == clean[row, pos]
    assert (batch.mask_labels[:, :length] == IGNORE).all()


def test_masking_rate_follows_one_eta_per_sequence():
    gen = torch.Generator().manual_seed(1)
    rates = []
    for _ in range(400):
        batch = sbd_batch([list(range(1, 65))], pad_id=0, mask_id=99, block=4, generator=gen)
        rates.append(float((batch.input_ids[0, 64:] == 99).float().mean()))
    rates = torch.tensor(rates)
    # η ~ U(0, 1): the per-sequence rate spreads over [0, 1] with mean 1/2 and variance ≈ 1/12.
    assert abs(float(rates.mean()) - 0.5) < 0.05
    assert abs(float(rates.var()) - 1 / 12) < 0.02


def test_encode_appends_eos_once(tiny_models):
    tokenizer = tiny_models["llama"].tokenizer
    eos = tokenizer.eos_token_id
    ids = encode(["abc", "abcdefghij"], tokenizer, max_length=6, eos_id=eos)
    assert ids[0][-1] == eos and ids[0].count(eos) == 1
    assert len(ids[1]) == 6 and ids[1][-1] == eos


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_is_one_mean_over_both_terms(family):
    loaded, mask_id = _with_mask_token(family)
    gen = torch.Generator().manual_seed(2)
    sequences = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [20, 21, 22, 23, 24, 25]]
    batch = sbd_batch(sequences, pad_id=0, mask_id=mask_id, block=3, generator=gen)
    with torch.no_grad():
        result = sbd_loss(loaded, batch)
    # The clean half sees only its own past: its NTP loss is the model's own loss on the text.
    for row, seq in enumerate(sequences):
        with torch.no_grad():
            logits = loaded.model(input_ids=torch.tensor([seq])).logits[0]
        expected = F.cross_entropy(logits[:-1].float(), torch.tensor(seq[1:]), reduction="sum")
        got_logits = _logits(loaded, batch)[row, : len(seq) - 1]
        got = F.cross_entropy(got_logits.float(), torch.tensor(seq[1:]), reduction="sum")
        assert torch.allclose(got, expected, atol=1e-4)
    labels = torch.cat([batch.ntp_labels, batch.mask_labels]).reshape(-1)
    logits = torch.cat([_logits(loaded, batch)] * 2).reshape(-1, result_vocab(loaded))
    mean = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)
    assert torch.allclose(result.loss, mean, atol=1e-5)
    assert result.ntp_count == 8 + 5
    assert result.masked_count == int((batch.mask_labels != IGNORE).sum())


def result_vocab(loaded) -> int:
    return loaded.model.get_output_embeddings().weight.shape[0]


def _logits(loaded, batch) -> torch.Tensor:
    positions = batch.position_ids[0]
    with torch.no_grad(), block_attention(loaded, lambda q, k: (batch.keep, positions)):
        return loaded.model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_a_training_block_sees_what_the_decoders_block_sees(family):
    """Block b of the corrupted copy, in training, gives the logits the decoder computes for the
    same block after the prefix clean[: b·k] (Fig. 9 against Fig. 10)."""
    loaded, mask_id = _with_mask_token(family)
    gen = torch.Generator().manual_seed(3)
    seq = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    k = 4
    batch = sbd_batch([seq], pad_id=0, mask_id=mask_id, block=k, generator=gen)
    trained = _logits(loaded, batch)[0]  # (2L, V)
    length = len(seq)
    for b in range(length // k):
        prefix = seq[: b * k]
        block = batch.input_ids[0, length + b * k : length + (b + 1) * k].tolist()
        state = _Pass()
        state.pending, state.block, state.start = len(prefix), k, 0
        with torch.no_grad(), block_attention(loaded, state.keep):
            decoded = loaded.model(input_ids=torch.tensor([prefix + block])).logits[0, -k:]
        expected = trained[length + b * k : length + (b + 1) * k]
        assert torch.allclose(decoded, expected, atol=1e-4), (family, b)
