"""Two sessions at once on one shared model: each call keeps its own truncation and its own seed."""

from __future__ import annotations

import copy
import pickle
import sys
import threading
from collections.abc import Callable

import pytest
import torch

from engine.models import generate_text
from engine.models.loading import share_tokenizer
from tests.tiny import char_tokenizer

LONG = "abcdefghij" * 30  # 300 characters: 300 tokens of the character tokenizer


def _together(*calls: Callable[[], None], repeat: int = 200) -> list[str]:
    """Run each call `repeat` times, all calls in threads of their own at once; what went wrong."""
    problems: list[str] = []

    def loop(call: Callable[[], None]) -> None:
        for _ in range(repeat):
            try:
                call()
            except Exception as exc:  # "Already borrowed" and wrong lengths alike
                problems.append(repr(exc)[:120])

    threads = [threading.Thread(target=loop, args=(call,)) for call in calls]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up at once
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    return problems


def _truncating(tokenizer) -> Callable[[], None]:
    def call() -> None:
        n = len(tokenizer(LONG, truncation=True, max_length=8)["input_ids"])
        assert n == 8, f"truncated call got {n} tokens"

    return call


def _whole(tokenizer) -> Callable[[], None]:
    def call() -> None:
        n = len(tokenizer(LONG)["input_ids"])
        assert n == len(LONG), f"untruncated call got {n} tokens"

    return call


def test_a_shared_tokenizer_truncates_only_the_calls_that_ask() -> None:
    tokenizer = share_tokenizer(copy.deepcopy(char_tokenizer()))
    problems = _together(
        _truncating(tokenizer), _whole(tokenizer), _truncating(tokenizer), _whole(tokenizer)
    )
    assert problems == []


def test_the_race_is_real_without_the_lock() -> None:
    """The same threads on an unguarded copy cross-talk (so the test above measures something)."""
    tokenizer = copy.deepcopy(char_tokenizer())
    tokenizer.__dict__.pop("_encode_plus", None)
    for _ in range(5):
        if _together(_truncating(tokenizer), _whole(tokenizer), repeat=300):
            return
    pytest.skip("no cross-talk in 5 tries on this machine (the race depends on scheduling)")


def test_a_shared_tokenizer_still_copies_and_pickles() -> None:
    tokenizer = share_tokenizer(copy.deepcopy(char_tokenizer()))
    for clone in (copy.deepcopy(tokenizer), pickle.loads(pickle.dumps(tokenizer))):  # noqa: S301 (our own bytes)
        assert clone("abcd")["input_ids"] == tokenizer("abcd")["input_ids"]
        assert clone._encode_plus.args[0] is clone  # its own lock, not the original's


def test_sampling_seeds_are_per_call_and_leave_the_global_seed_alone(tiny_models) -> None:
    loaded = tiny_models["llama"]

    def sample(seed: int) -> str:
        return generate_text(
            loaded, "The cat", max_new_tokens=12, chat=False, temperature=1.5, seed=seed
        ).text

    alone = {seed: sample(seed) for seed in (0, 1)}
    assert alone[0] != alone[1]
    assert sample(0) == alone[0]  # reproducible

    state = torch.get_rng_state()
    seen: dict[int, set[str]] = {0: set(), 1: set()}

    def call(seed: int) -> Callable[[], None]:
        return lambda: seen[seed].add(sample(seed))

    assert _together(call(0), call(1), repeat=15) == []
    assert seen == {0: {alone[0]}, 1: {alone[1]}}
    assert torch.equal(torch.get_rng_state(), state)
