"""The demo's teacher tasks: deterministic seeded draws, prompts without answers, correct answers,
at least nine tasks over the four families."""

from __future__ import annotations

import re

import pytest

from engine.data.corpus import demo_code_corpus, demo_general_corpus
from engine.data.formats import Example
from engine.data.lora_tasks import DEMO_HELD_OUT, FAMILIES, LORA_TASKS, task_names, task_prompts
from engine.errors import SubnetScopeError


def test_at_least_nine_tasks_over_every_family():
    assert len(LORA_TASKS) >= 9
    assert {
        "add",
        "sub",
        "mul",
        "add-words",
        "compare",
        "upper",
        "reverse",
        "prose",
        "code",
    } <= set(LORA_TASKS)
    assert {t.family for t in LORA_TASKS.values()} == set(FAMILIES)
    for name, task in LORA_TASKS.items():
        assert task.name == name and re.fullmatch(r"[a-z][a-z0-9-]*", name)
        assert task.title and task.family in FAMILIES
    assert set(DEMO_HELD_OUT) <= set(LORA_TASKS)


@pytest.mark.parametrize("name", list(LORA_TASKS))
def test_draws_are_seeded_distinct_and_prefix_stable(name):
    task = LORA_TASKS[name]
    first = task.examples(40, seed=3)
    assert first == task.examples(40, seed=3)
    assert task.examples(10, seed=3) == first[:10]  # more training data keeps the first ones
    assert task.examples(40, seed=4) != first
    assert len({(e.instruction, e.response) for e in first}) == 40
    assert all(isinstance(e, Example) and e.instruction and e.response for e in first)


def test_tasks_with_one_seed_draw_independently():
    add = [e.instruction.split()[2] for e in LORA_TASKS["add"].examples(20, 0)]
    words = [e.instruction.split()[1] for e in LORA_TASKS["add-words"].examples(20, 0)]
    assert add != words


def test_prompts_are_the_instructions_only():
    examples = LORA_TASKS["add"].examples(5, 0)
    prompts = task_prompts(examples)
    assert prompts == [e.instruction for e in examples]
    for prompt, example in zip(prompts, examples, strict=True):
        assert example.response not in prompt
    with pytest.raises(SubnetScopeError, match="no instruction"):
        task_prompts([Example(text="plain")])


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def test_arithmetic_answers_are_right():
    for e in LORA_TASKS["add"].examples(50, 1):
        a, b = _numbers(e.instruction)
        assert e.instruction == f"What is {a} + {b}?" and e.response == f"{a} + {b} = {a + b}."
        assert 10 <= a <= 99 and 10 <= b <= 99
    for e in LORA_TASKS["sub"].examples(50, 1):
        a, b = _numbers(e.instruction)
        assert e.response == f"{a} - {b} = {a - b}." and a >= b
    for e in LORA_TASKS["mul"].examples(50, 1):
        a, b = _numbers(e.instruction)
        assert e.response == f"{a} * {b} = {a * b}." and a < 10 <= b < 100
    for e in LORA_TASKS["add-words"].examples(50, 1):
        a, b = _numbers(e.instruction)
        assert e.instruction == f"Add {a} and {b}." and e.response == f"The sum is {a + b}."
    for e in LORA_TASKS["compare"].examples(50, 1):
        a, b = _numbers(e.instruction)
        assert a != b and e.response == f"{max(a, b)} is larger."


def test_text_format_answers_are_right():
    for e in LORA_TASKS["upper"].examples(30, 2):
        sentence = e.instruction.removeprefix("Write in capitals: ")
        assert e.response == sentence.upper()
        assert 4 <= len(sentence.split()) <= 12 and sentence in " ".join(demo_general_corpus())
    for e in LORA_TASKS["reverse"].examples(30, 2):
        sentence = e.instruction.removeprefix("Reverse the words: ")
        words = sentence.removesuffix(".").split()
        assert e.response == " ".join(words[::-1]) + "."
    for e in LORA_TASKS["count"].examples(30, 2):
        sentence = e.instruction.removeprefix("How many words are in this sentence? ")
        assert e.response == f"{len(sentence.split())} words."


def test_prose_and_code_split_a_corpus_text_into_opening_and_rest():
    prose, code = set(demo_general_corpus()), set(demo_code_corpus())
    for e in LORA_TASKS["prose"].examples(20, 0):
        assert len(e.instruction) <= 80 and e.response
        assert f"{e.instruction} {e.response}" in prose
    for e in LORA_TASKS["code"].examples(20, 0):
        assert "\n" not in e.instruction and len(e.instruction) <= 80
        assert any(text.startswith(e.instruction) and e.response in text for text in code)


def test_task_names_and_draw_limits():
    assert task_names("all") == list(LORA_TASKS)
    assert task_names("sub, add") == ["add", "sub"]  # LORA_TASKS order
    with pytest.raises(SubnetScopeError, match="unknown task nope"):
        task_names("add,nope")
    with pytest.raises(SubnetScopeError, match="no tasks"):
        task_names(" ")
    task = LORA_TASKS["code"]
    with pytest.raises(SubnetScopeError, match=f"has {task.size()} distinct examples"):
        task.examples(task.size() + 1, 0)
