"""Two sessions at once on one shared model: each call keeps its own truncation and its own seed."""

from __future__ import annotations

import copy
import pickle
import sys
import threading
from collections.abc import Callable

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


class _SwitchInEncode:
    """A fast tokenizer's backend whose first encode lets `other` run in another thread (waiting
    up to `wait` s for it) after the caller has set its truncation: the worst moment for a
    thread switch, made to happen instead of hoped for."""

    def __init__(self, backend: object, other: Callable[[], None], wait: float = 1.0) -> None:
        vars(self).update(backend=backend, other=other, wait=wait, thread=None)

    def __getattr__(self, name: str) -> object:
        value = getattr(self.backend, name)
        if not name.startswith("encode") or self.thread is not None:
            return value

        def encode(*args, **kwargs):
            vars(self)["thread"] = threading.Thread(target=self.other)
            self.thread.start()
            self.thread.join(self.wait)  # with the lock, `other` waits for this call to end
            return value(*args, **kwargs)

        return encode

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self.backend, name, value)


def _switched(tokenizer) -> dict[str, int]:
    """Token counts of a call truncated to 8 and of an untruncated one run in the middle of it."""
    counts = {}

    def whole() -> None:
        counts["whole"] = len(tokenizer(LONG)["input_ids"])

    backend = tokenizer._tokenizer
    tokenizer._tokenizer = switch = _SwitchInEncode(backend, whole)
    try:
        counts["truncated"] = len(tokenizer(LONG, truncation=True, max_length=8)["input_ids"])
        switch.thread.join()
    finally:
        tokenizer._tokenizer = backend
    return counts


def test_the_race_is_real_without_the_lock() -> None:
    """An unguarded copy cross-talks when a thread switches at the worst moment (so the threads
    above could catch it): the untruncated call clears the truncation the other call set."""
    tokenizer = copy.deepcopy(char_tokenizer())
    tokenizer.__dict__.pop("_encode_plus", None)
    assert _switched(tokenizer) == {"whole": len(LONG), "truncated": len(LONG)}


def test_the_lock_holds_at_the_worst_moment() -> None:
    tokenizer = share_tokenizer(copy.deepcopy(char_tokenizer()))
    assert _switched(tokenizer) == {"whole": len(LONG), "truncated": 8}


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
