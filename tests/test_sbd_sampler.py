"""The entropy-bounded reveal rule of Set Block Decoding: entropies, the count, the chosen slots."""

from __future__ import annotations

import math
import random

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.models.sbd_sampler import choose, reveal_count, token_entropies

VOCAB = 16


def spread_over(m: int, top: int = 0) -> torch.Tensor:
    """(VOCAB,) logits uniform over `m` tokens starting at `top` (entropy exactly log m); the rest
    are -inf."""
    row = torch.full((VOCAB,), float("-inf"))
    row[top : top + m] = 0.0
    return row


def eq18(sorted_entropies: list[float], threshold: float) -> int:
    """Eq. 18 of arXiv 2509.04185 by brute force: the largest s ≥ 1 with
    Σ_{j≤s} H_j − max_{j≤s} H_j ≤ γ."""
    best = 1
    for s in range(1, len(sorted_entropies) + 1):
        head = sorted_entropies[:s]
        if sum(head) - max(head) <= threshold:
            best = s
    return best


# token_entropies ------------------------------------------------------------------------------


def test_entropies_of_one_hot_and_uniform_rows():
    logits = torch.stack(
        [
            torch.tensor([0.0] + [-1e4] * (VOCAB - 1)),  # one-hot, finite logits
            spread_over(1, top=3),  # one-hot, -inf elsewhere
            torch.zeros(VOCAB),  # uniform
            spread_over(4),
        ]
    )
    entropies = token_entropies(logits)
    assert entropies.shape == (4,)
    assert entropies[:2].tolist() == [0.0, 0.0]
    torch.testing.assert_close(entropies[2:], torch.tensor([math.log(VOCAB), math.log(4)]))


def test_entropies_equal_the_definition_in_nats():
    torch.manual_seed(0)
    logits = torch.randn(7, VOCAB) * 3
    p = torch.softmax(logits.double(), dim=-1)
    entropies = token_entropies(logits)
    assert entropies.dtype == torch.float32
    assert (entropies > 0).all()
    torch.testing.assert_close(entropies.double(), -(p * p.log()).sum(dim=-1))
    # half-precision logits are read in float32
    assert token_entropies(logits.to(torch.bfloat16)).dtype == torch.float32


def test_entropies_with_minus_infinity_logits_are_finite():
    logits = torch.stack([spread_over(2), spread_over(8, top=5)])
    entropies = token_entropies(logits)
    assert torch.isfinite(entropies).all()
    torch.testing.assert_close(entropies, torch.tensor([math.log(2), math.log(8)]))


# reveal_count ---------------------------------------------------------------------------------


def test_zero_threshold_reveals_one_unless_entropies_are_zero():
    assert reveal_count([0.25, 0.5, 1.0], 0.0) == 1
    assert reveal_count([1e-3, 1e-3], 0.0) == 1
    # s − 1 zero entropies sum to 0 ≤ 0: every zero, and the next slot with them
    assert reveal_count([0.0, 0.0, 0.5, 1.0], 0.0) == 3
    assert reveal_count([0.0, 0.0, 0.0], 0.0) == 3


def test_infinite_threshold_reveals_all():
    assert reveal_count([3.0, 4.0, 5.0, 9.0], math.inf) == 4
    assert reveal_count([0.5], math.inf) == 1
    assert reveal_count([], math.inf) == 0


def test_planted_entropies_give_the_exact_count():
    sorted_entropies = [0.125, 0.25, 0.5, 1.0]
    # (threshold, count): the s − 1 smallest must sum to ≤ γ
    for threshold, count in [
        (0.0, 1),
        (0.1, 1),
        (0.125, 2),
        (0.3, 2),
        (0.375, 3),
        (0.874, 3),
        (0.875, 4),
        (100.0, 4),
    ]:
        assert reveal_count(sorted_entropies, threshold) == count, threshold


def test_the_rule_equals_eq18_on_random_cases():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 12)
        # multiples of 1/64: every partial sum is exact, so ≤ at the boundary is tested exactly
        entropies = sorted(rng.randint(0, 200) / 64 for _ in range(n))
        threshold = rng.choice([0.0, rng.randint(0, 400) / 64, sum(entropies[:-1])])
        assert reveal_count(entropies, threshold) == eq18(entropies, threshold)


# choose ---------------------------------------------------------------------------------------


def test_choose_reveals_the_planted_count_lowest_entropy_first():
    # slot: entropy → 2: 0 (token 7), 5: log 2, 0: log 4, 3: log 8
    slots = [0, 2, 3, 5]
    logits = torch.stack([spread_over(4), spread_over(1, top=7), spread_over(8), spread_over(2)])
    low, high = math.log(2) + math.log(4) - 0.01, math.log(2) + math.log(4) + 0.01
    # the zero-entropy slot costs nothing: γ = 0 reveals it and the next one
    assert [r.slot for r in choose(logits, slots, 0.0)] == [2, 5]
    assert [r.slot for r in choose(logits, slots, math.log(2) - 0.01)] == [2, 5]
    assert [r.slot for r in choose(logits, slots, math.log(2) + 0.01)] == [2, 5, 0]
    assert [r.slot for r in choose(logits, slots, low)] == [2, 5, 0]
    assert [r.slot for r in choose(logits, slots, high)] == [2, 5, 0, 3]
    assert [r.slot for r in choose(logits, slots, math.inf)] == [2, 5, 0, 3]
    reveals = choose(logits, slots, math.inf)
    assert [r.token for r in reveals] == [7, 0, 0, 0]  # argmax, the first of equal maxima
    torch.testing.assert_close(
        torch.tensor([r.entropy for r in reveals]),
        torch.tensor([0.0, math.log(2), math.log(4), math.log(8)]),
    )


def test_zero_threshold_reveals_exactly_one_slot_of_a_real_distribution():
    torch.manual_seed(1)
    logits = torch.randn(6, VOCAB)
    reveals = choose(logits, list(range(6)), 0.0)
    assert len(reveals) == 1
    assert reveals[0].slot == int(token_entropies(logits).argmin())
    assert reveals[0].token == int(logits[reveals[0].slot].argmax())


def test_ties_go_to_the_earlier_slot_whatever_the_row_order():
    row = torch.randn(VOCAB)
    logits = torch.stack([row, row, row])
    for slots in ([4, 1, 9], [9, 4, 1], [1, 9, 4]):
        assert [r.slot for r in choose(logits, slots, 0.0)] == [1]
        assert [r.slot for r in choose(logits, slots, math.inf)] == [1, 4, 9]


@pytest.mark.parametrize("threshold", [-0.1, float("nan"), float("-inf")])
def test_bad_thresholds_are_refused(threshold):
    with pytest.raises(SubnetScopeError, match="threshold"):
        choose(torch.zeros(2, VOCAB), [0, 1], threshold)


def test_one_row_per_slot():
    with pytest.raises(ValueError):
        choose(torch.zeros(2, VOCAB), [0, 1, 2], 0.5)
