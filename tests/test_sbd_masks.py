"""Set Block Decoding's training attention mask: against a hand-built one, against the paper's rule
by brute force, and through the attention hook into every tiny family (sdpa and eager)."""

from __future__ import annotations

import random

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.models import SBD_MASK_TOKEN, block_attention, mask_token_id, training_keep
from engine.models.sbd_masks import block_index, key_positions
from tests.tiny import char_tokenizer, tiny_model

DECODERS = ("llama", "gpt2", "qwen2", "gemma3", "gemma3n")


def grid(rows: str) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in row.split()[0]] for row in rows.strip().splitlines()])


# L = 5, k = 2: clean c0..c4 then corrupted m0..m4; blocks {0, 1}, {2, 3}, tail {4}.
# Sample 0 has one padding token (position 4), sample 1 none.
#                  keys: c0..c4 m0..m4
HAND_PADDED = grid("""
1000000000  c0 causal
1100000000  c1
1110000000  c2
1111000000  c3
1111100000  c4 padding: sees the clean past and itself
0000011000  m0 block 0: no clean before it, its own block both ways
0000011000  m1
1100000110  m2 block 1: clean < 2, its own block
1100000110  m3
0000000001  m4 the tail (and padding): itself only
""")
HAND_FULL = grid("""
1000000000  c0
1100000000  c1
1110000000  c2
1111000000  c3
1111100000  c4
0000011000  m0
0000011000  m1
1100000110  m2
1100000110  m3
0000000001  m4 the tail: itself only
""")


def brute_keep(valid: list[bool], block: int) -> torch.Tensor:
    """(2L, 2L) the paper's Fig. 9 rule as a loop; padding hidden, every row keeps itself."""
    length = len(valid)
    full = length // block * block
    keep = torch.zeros(2 * length, 2 * length, dtype=torch.bool)
    for q in range(2 * length):
        for k in range(2 * length):
            if q < length:  # clean: causal over clean
                allowed = k < length and k <= q
            else:
                qp = q - length
                if qp >= full:  # the tail carries no loss
                    allowed = False
                elif k < length:  # clean keys before the query's block
                    allowed = k < qp // block * block
                else:  # corrupted keys of the same block
                    allowed = (k - length) < full and (k - length) // block == qp // block
            keep[q, k] = (allowed and valid[k % length]) or q == k
    return keep


def test_training_keep_equals_the_hand_built_mask():
    valid = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    keep = training_keep(valid, 2)
    assert keep.shape == (2, 1, 10, 10)
    assert keep.dtype == torch.bool
    assert torch.equal(keep[0, 0], HAND_PADDED)
    assert torch.equal(keep[1, 0], HAND_FULL)


def test_training_keep_equals_the_rule_on_random_shapes():
    rng = random.Random(0)
    for _ in range(30):
        length, block = rng.randint(1, 13), rng.randint(1, 6)
        valid = [[i < rng.randint(1, length) for i in range(length)] for _ in range(2)]
        keep = training_keep(torch.tensor(valid), block)
        for b in range(2):
            assert torch.equal(keep[b, 0], brute_keep(valid[b], block)), (length, block, b)
        assert keep.any(dim=-1).all()  # no empty row


def test_training_keep_follows_the_device_of_valid():
    keep = training_keep(torch.ones(2, 6, dtype=torch.bool, device="meta"), 2)
    assert (keep.device.type, keep.shape) == ("meta", (2, 1, 12, 12))


def test_block_index_and_bad_block():
    assert block_index(5, 2).tolist() == [0, 0, 1, 1, -1]
    assert block_index(4, 4).tolist() == [0, 0, 0, 0]
    assert block_index(3, 4).tolist() == [-1, -1, -1]
    with pytest.raises(SubnetScopeError, match="block size"):
        training_keep(torch.ones(1, 4), 0)


def test_key_positions_of_a_cache_and_of_a_sliding_window():
    assert key_positions(torch.tensor([10, 11, 12]), 5).tolist() == [8, 9, 10, 11, 12]
    assert key_positions(torch.tensor([0, 1, 2, 0, 1, 2]), 6).tolist() == [0, 1, 2, 0, 1, 2]


def test_mask_token_id():
    with pytest.raises(SubnetScopeError, match=r"not SBD-trained.*sbd train"):
        mask_token_id(char_tokenizer())
    tokenizer = char_tokenizer.__wrapped__()  # a fresh one: the cached tokenizer is shared
    tokenizer.add_special_tokens({"additional_special_tokens": [SBD_MASK_TOKEN]})
    assert mask_token_id(tokenizer) == len(tokenizer) - 1


# The mask inside the model ------------------------------------------------------------------

LENGTH, BLOCK = 22, 4  # five full blocks and a tail of two; longer than gemma's window of 16


def _model(family: str, implementation: str):
    loaded = tiny_model(family)
    loaded.model.set_attn_implementation(implementation)
    return loaded


def _sbd_forward(loaded, clean: torch.Tensor, corrupted: torch.Tensor, valid: torch.Tensor):
    """(B, 2L, vocab) logits of [clean ; corrupted], both halves at positions 0..L-1."""
    length = clean.shape[1]
    keep = training_keep(valid, BLOCK)
    positions = torch.arange(length).repeat(2)

    def keep_for(q_len: int, k_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert q_len == k_len == 2 * length
        return keep, positions

    with torch.no_grad(), block_attention(loaded, keep_for):
        out = loaded.model(
            input_ids=torch.cat([clean, corrupted], dim=1),
            position_ids=positions[None].expand(clean.shape[0], -1),
            use_cache=False,
        )
    return out.logits


def _plain(loaded, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(input_ids=ids, use_cache=False).logits


def _tokens(generator: torch.Generator, length: int) -> torch.Tensor:
    return torch.randint(3, 90, (1, length), generator=generator)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("family", DECODERS)
def test_the_mask_reaches_the_model(family, implementation):
    loaded = _model(family, implementation)
    generator = torch.Generator().manual_seed(0)
    clean, corrupted = _tokens(generator, LENGTH), _tokens(generator, LENGTH)
    valid = torch.ones(1, LENGTH, dtype=torch.long)
    logits = _sbd_forward(loaded, clean, corrupted, valid)[0]

    # the clean half is a plain causal forward of the clean sequence (gemma: its window included)
    torch.testing.assert_close(logits[:LENGTH], _plain(loaded, clean)[0], atol=1e-5, rtol=1e-4)

    slots = slice(LENGTH + 2 * BLOCK, LENGTH + 3 * BLOCK)  # corrupted block 2: positions 8..11

    def slot_logits(new_clean: torch.Tensor, new_corrupted: torch.Tensor) -> torch.Tensor:
        return _sbd_forward(loaded, new_clean, new_corrupted, valid)[0, slots]

    def changed(ids: torch.Tensor, position: int) -> torch.Tensor:
        ids = ids.clone()
        ids[0, position] = 3 + (int(ids[0, position]) - 3 + 17) % 87
        return ids

    here = logits[slots]
    # other corrupted blocks, the tail, and clean tokens from the block's start on are invisible
    for position in (0, 7, 12, 15, 20, 21):
        torch.testing.assert_close(slot_logits(clean, changed(corrupted, position)), here)
    for position in (8, 10, 13, 21):
        torch.testing.assert_close(slot_logits(changed(clean, position), corrupted), here)
    # the block's first slot sees every slot of its block (later ones too: both ways) and the
    # clean tokens before the block
    for position in (8, 9, 11):
        assert (slot_logits(clean, changed(corrupted, position)) - here)[0].abs().max() > 1e-4
    for position in (0, 7):
        assert (slot_logits(changed(clean, position), corrupted) - here)[0].abs().max() > 1e-4


@pytest.mark.parametrize("family", DECODERS)
def test_padding_keys_are_hidden_in_the_model(family):
    loaded = tiny_model(family)
    generator = torch.Generator().manual_seed(1)
    short = 4 * BLOCK  # the second sample: 16 real tokens, then 6 of padding
    clean, corrupted = _tokens(generator, LENGTH), _tokens(generator, LENGTH)
    second_clean, second_corrupted = _tokens(generator, short), _tokens(generator, short)
    pad = torch.zeros(1, LENGTH - short, dtype=torch.long)
    batch_clean = torch.cat([clean, torch.cat([second_clean, pad], dim=1)])
    batch_corrupted = torch.cat([corrupted, torch.cat([second_corrupted, pad + 5], dim=1)])
    valid = torch.ones(2, LENGTH, dtype=torch.long)
    valid[1, short:] = 0

    batched = _sbd_forward(loaded, batch_clean, batch_corrupted, valid)
    alone = _sbd_forward(
        loaded, second_clean, second_corrupted, torch.ones(1, short, dtype=torch.long)
    )[0]
    first = _sbd_forward(loaded, clean, corrupted, valid[:1])[0]
    torch.testing.assert_close(batched[0], first, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched[1, :short], alone[:short], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        batched[1, LENGTH : LENGTH + short], alone[short:], atol=1e-5, rtol=1e-4
    )
    assert torch.isfinite(batched).all()  # padding rows keep themselves: no empty softmax


def test_the_mask_holds_only_inside_the_block():
    loaded = tiny_model("llama")
    ids = _tokens(torch.Generator().manual_seed(2), 10)
    before = _plain(loaded, ids)
    everything = torch.ones(1, 1, 10, 10, dtype=torch.bool)
    with block_attention(loaded, lambda q_len, k_len: (everything, torch.arange(10))):
        inside = _plain(loaded, ids)
    assert (inside - before).abs().max() > 1e-4  # bidirectional: the first logits change
    assert torch.equal(_plain(loaded, ids), before)
