"""The demo's teacher tasks (issue 20, seed 004): small instruction tasks built from local data.

Each task draws distinct examples, seeded and deterministic, from generated arithmetic or from the
offline corpora (`engine.data.corpus`); `examples(n, seed)` is a prefix of `examples(n + k, seed)`,
so a run's held-out examples do not move when it trains on more. The generator is conditioned on
the prompts alone (DnD: prompts, no answers), hence `task_prompts`.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from engine.data.corpus import demo_code_corpus, demo_general_corpus
from engine.data.formats import Example
from engine.errors import SubnetScopeError

FAMILIES = ("arithmetic", "text-format", "prose", "code")
# Corpus sentences for the text-format tasks: plain ASCII prose of 4–12 words ending in a period.
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_PLAIN_SENTENCE = re.compile(r"[A-Z][A-Za-z0-9 ,;()'-]*[a-z]\.")
_MIN_WORDS, _MAX_WORDS = 4, 12
_OPENING_CHARS = 60  # prose/code: the instruction is the text's opening, about this long


@lru_cache(maxsize=1)
def _sentences() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for document in demo_general_corpus():
        for sentence in _SENTENCE_SPLIT.split(document):
            if _MIN_WORDS <= len(sentence.split()) <= _MAX_WORDS and _PLAIN_SENTENCE.fullmatch(
                sentence
            ):
                seen.setdefault(sentence, None)
    return tuple(seen)


@lru_cache(maxsize=2)
def _distinct(corpus: Callable[[], list[str]]) -> tuple[str, ...]:
    """The corpus's texts without repeats (the prose corpus holds a few twice), in order."""
    return tuple(dict.fromkeys(corpus()))


def _opening(text: str) -> tuple[str, str]:
    """(opening, rest): the first line when it is short, else the first ~60 characters cut at a
    space; the rest is everything after it."""
    first, _, rest = text.partition("\n")
    if first.strip() and len(first) <= _OPENING_CHARS + 20:
        return first.rstrip(), rest.strip("\n")
    cut = text.rfind(" ", 0, _OPENING_CHARS + 1)
    cut = cut if cut > 0 else _OPENING_CHARS
    return text[:cut].rstrip(), text[cut:].strip()


@dataclass(frozen=True)
class LoraTask:
    """One teacher task: a name (short, filename-safe), a title, a family and its example pool."""

    name: str
    title: str
    family: str
    _pool: Callable[[], Sequence[object]] = field(repr=False, compare=False)
    _example: Callable[[object], Example] = field(repr=False, compare=False)

    def size(self) -> int:
        """How many distinct examples the task has."""
        return len(self._pool())

    def examples(self, n: int, seed: int) -> list[Example]:
        """`n` distinct examples in a seeded order (a prefix of any longer draw with the seed)."""
        pool = self._pool()
        if not 0 <= n <= len(pool):
            raise SubnetScopeError(
                f"task '{self.name}' has {len(pool)} distinct examples; cannot draw {n}"
            )
        # The task's name enters the seed, so two tasks drawn with one seed are independent.
        rng = np.random.default_rng([int(seed), zlib.crc32(self.name.encode())])
        order = rng.permutation(len(pool))[:n]
        return [self._example(pool[i]) for i in order.tolist()]


def task_prompts(examples: Sequence[Example]) -> list[str]:
    """The prompts of `examples`: their instructions only, never the answers (DnD)."""
    prompts = []
    for example in examples:
        if example.instruction is None:
            raise SubnetScopeError("a task example has no instruction to use as a prompt")
        prompts.append(example.instruction)
    return prompts


@lru_cache(maxsize=8)
def _grid(first: range, second: range, keep: str = "all") -> tuple[tuple[int, int], ...]:
    pairs = [(a, b) for a in first for b in second]
    if keep == "a>=b":
        pairs = [(a, b) for a, b in pairs if a >= b]
    elif keep == "a!=b":
        pairs = [(a, b) for a, b in pairs if a != b]
    return tuple(pairs)


_TWO_DIGITS = range(10, 100)


def _arithmetic(
    name: str,
    title: str,
    pairs: Callable[[], Sequence[tuple[int, int]]],
    example: Callable[[int, int], Example],
) -> LoraTask:
    return LoraTask(name, title, "arithmetic", pairs, lambda p: example(*p))


def _qa(instruction: str, response: str) -> Example:
    return Example(instruction=instruction, response=response)


def _words_reversed(sentence: str) -> str:
    """The words in reverse order; the final period stays at the end."""
    return " ".join(reversed(sentence.removesuffix(".").split())) + "."


def _opening_example(text: object) -> Example:
    opening, rest = _opening(str(text))
    return _qa(opening, rest)


_TASKS: tuple[LoraTask, ...] = (
    _arithmetic(
        "add",
        "Two-digit sums (What is a + b?)",
        lambda: _grid(_TWO_DIGITS, _TWO_DIGITS),
        # The demo-arithmetic format (engine/data/demo_tasks.py).
        lambda a, b: _qa(f"What is {a} + {b}?", f"{a} + {b} = {a + b}."),
    ),
    _arithmetic(
        "sub",
        "Two-digit differences (What is a - b?)",
        lambda: _grid(_TWO_DIGITS, _TWO_DIGITS, "a>=b"),
        lambda a, b: _qa(f"What is {a} - {b}?", f"{a} - {b} = {a - b}."),
    ),
    _arithmetic(
        "mul",
        "One-digit times two-digit products (What is a * b?)",
        lambda: _grid(range(2, 10), _TWO_DIGITS),
        lambda a, b: _qa(f"What is {a} * {b}?", f"{a} * {b} = {a * b}."),
    ),
    _arithmetic(
        "add-words",
        "Sums in words (Add a and b. → The sum is c.)",
        lambda: _grid(_TWO_DIGITS, _TWO_DIGITS),
        lambda a, b: _qa(f"Add {a} and {b}.", f"The sum is {a + b}."),
    ),
    _arithmetic(
        "compare",
        "The larger of two numbers (Which is larger, a or b?)",
        lambda: _grid(_TWO_DIGITS, _TWO_DIGITS, "a!=b"),
        lambda a, b: _qa(f"Which is larger, {a} or {b}?", f"{max(a, b)} is larger."),
    ),
    LoraTask(
        "upper",
        "A corpus sentence in capitals",
        "text-format",
        _sentences,
        lambda s: _qa(f"Write in capitals: {s}", str(s).upper()),
    ),
    LoraTask(
        "reverse",
        "The words of a corpus sentence in reverse order",
        "text-format",
        _sentences,
        lambda s: _qa(f"Reverse the words: {s}", _words_reversed(str(s))),
    ),
    LoraTask(
        "count",
        "The number of words in a corpus sentence",
        "text-format",
        _sentences,
        lambda s: _qa(f"How many words are in this sentence? {s}", f"{len(str(s).split())} words."),
    ),
    LoraTask(
        "prose",
        "Continue a paragraph of Python's documentation (demo-general)",
        "prose",
        lambda: _distinct(demo_general_corpus),
        _opening_example,
    ),
    LoraTask(
        "code",
        "Continue a standard-library function or class (demo-code)",
        "code",
        lambda: _distinct(demo_code_corpus),
        _opening_example,
    ),
)

LORA_TASKS: dict[str, LoraTask] = {task.name: task for task in _TASKS}
DEMO_HELD_OUT: tuple[str, ...] = ("sub",)  # held out of generator training by default


def task_names(value: str | Sequence[str]) -> list[str]:
    """'all' or a comma list (or a list) of task names, in LORA_TASKS order; unknown names are
    one clear error."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = [str(v) for v in value]
    if not names:
        raise SubnetScopeError("no tasks given: use 'all' or a comma list like add,sub")
    if names == ["all"]:
        return list(LORA_TASKS)
    unknown = [n for n in names if n not in LORA_TASKS]
    if unknown:
        raise SubnetScopeError(
            f"unknown task{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"use 'all' or some of {', '.join(LORA_TASKS)}"
        )
    return [n for n in LORA_TASKS if n in names]
