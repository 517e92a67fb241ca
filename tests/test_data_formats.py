"""Unit tests for engine.data.formats: format detection, conversion, templates, record files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from engine.data import formats
from engine.data.formats import (
    FORMATS,
    TEMPLATES,
    Example,
    detect_dataset_format,
    detect_format,
    format_example,
    format_prompt,
    load_records,
    to_example,
    to_examples,
)
from engine.errors import SubnetScopeError

# One record per format: (record, format name, instruction, response).
CASES = [
    (
        {"instruction": "Summarise.", "context": "Cats sleep.", "response": "Sleepy cats."},
        "dolly",
        "Summarise.\n\nCats sleep.",
        "Sleepy cats.",
    ),
    (
        {"instruction": "Translate.", "input": "chat", "output": "cat"},
        "alpaca",
        "Translate.\n\nchat",
        "cat",
    ),
    (
        {"context": "Paris is in France.", "question": "Where is Paris?", "answer": "France"},
        "context-question-answer",
        "Where is Paris?\n\nParis is in France.",
        "France",
    ),
    ({"instruction": "Say hi.", "response": "hi"}, "instruction-response", "Say hi.", "hi"),
    ({"instruction": "Say yo.", "output": "yo"}, "instruction-output", "Say yo.", "yo"),
    ({"question": "2+2?", "answer": "4"}, "question-answer", "2+2?", "4"),
    ({"question": "3+3?", "response": "6"}, "question-response", "3+3?", "6"),
    ({"prompt": "Once", "completion": " upon"}, "prompt-completion", "Once", " upon"),
    ({"prompt": "Name a fruit.", "response": "apple"}, "prompt-response", "Name a fruit.", "apple"),
    ({"query": "capital of Peru", "response": "Lima"}, "query-response", "capital of Peru", "Lima"),
    ({"problem": "x+1=2", "solution": "x=1"}, "problem-solution", "x+1=2", "x=1"),
    ({"input": "ping", "output": "pong"}, "input-output", "ping", "pong"),
    ({"context": "I am sad.", "response": "Sorry."}, "context-response", "I am sad.", "Sorry."),
    ({"human": "Hello?", "assistant": "Hi!"}, "human-assistant", "Hello?", "Hi!"),
    (
        {"system": "Be brief.", "user": "Why?", "assistant": "Because."},
        "system-user-assistant",
        "Why?",
        "Because.",
    ),
    ({"user": "Ok?", "assistant": "Ok."}, "user-assistant", "Ok?", "Ok."),
    (
        {"message_1": "What is a photon?", "message_2": "A quantum of light.", "topic": "Physics"},
        "camel-ai",
        "What is a photon?",
        "A quantum of light.",
    ),
    (
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "one"},
                {"role": "user", "content": "second"},
                {"role": "assistant", "content": "two"},
            ]
        },
        "messages",
        "second",
        "two",
    ),
    (
        {
            "conversations": [
                {"from": "system", "value": "Be terse."},
                {"from": "human", "value": "hey"},
                {"from": "gpt", "value": "hey yourself"},
            ]
        },
        "sharegpt",
        "hey",
        "hey yourself",
    ),
]

CHATML = "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>"
PAIR = Example(instruction="Say hi.", response="hi")


class FakeChatTokenizer:
    """Renders turns as 'role: content' lines, the way a chat template would."""

    chat_template = "{% for m in messages %}...{% endfor %}"

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        assert tokenize is False
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        return text + ("assistant: " if add_generation_prompt else "")


class NoTemplateTokenizer:
    chat_template = None


@pytest.mark.parametrize(("record", "name", "instruction", "response"), CASES)
def test_each_format_is_detected_and_converted(record, name, instruction, response):
    assert detect_format(record).name == name
    example = to_example(record)
    assert (example.instruction, example.response, example.text) == (instruction, response, None)


def test_every_format_has_a_case_and_a_unique_name():
    names = [f.name for f in FORMATS]
    assert len(set(names)) == len(names)
    assert set(names) == {name for _, name, _, _ in CASES} | {"text"}


def test_plain_text_record():
    assert detect_format({"text": "just words", "meta": 1}).name == "text"
    assert to_example({"text": "just words"}) == Example(text="just words")


def test_priority_prefers_the_most_specific_format():
    record = {"instruction": "Translate.", "input": "chat", "output": "cat"}
    assert detect_format(record).name == "alpaca"
    # A blank optional field still marks the specific format; a missing one does not.
    assert detect_format({**record, "input": ""}).name == "alpaca"
    assert detect_format({"instruction": "Hi", "context": "", "response": "yo"}).name == "dolly"
    assert detect_format({"instruction": "Hi", "output": "yo"}).name == "instruction-output"


def test_empty_input_and_context_fold_away():
    alpaca = to_example({"instruction": "Translate.", "input": "  ", "output": "cat"})
    dolly = to_example({"instruction": "Say.", "context": None, "response": "it"})
    assert alpaca.instruction == "Translate."
    assert dolly.instruction == "Say."
    system = to_example({"system": "", "user": "Why?", "assistant": "Because."})
    assert system.system is None


def test_system_and_messages_are_kept():
    example = to_example(CASES[14][0])
    assert example.system == "Be brief."
    chat = to_example(CASES[17][0])
    assert chat.system == "Be kind."
    roles = [m["role"] for m in chat.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    sharegpt = to_example(CASES[18][0])
    assert sharegpt.messages == (
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "hey"},
        {"role": "assistant", "content": "hey yourself"},
    )


def test_turns_after_the_last_assistant_reply_are_dropped():
    record = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "dangling"},
        ]
    }
    example = to_example(record)
    assert (example.instruction, example.response) == ("q", "a")
    assert len(example.messages) == 2


def test_heterogeneous_records_convert_per_item():
    records = [CASES[1][0], CASES[5][0], {"text": "plain"}, CASES[17][0]]
    examples = to_examples(records)
    assert [e.response for e in examples] == ["cat", "4", None, "two"]
    assert examples[2].text == "plain"


def test_majority_detection_over_the_first_records():
    alpaca, qa = CASES[1][0], CASES[5][0]
    assert detect_dataset_format([qa, alpaca, alpaca, {"bad": "x"}]) == "alpaca"
    # Only the first 100 records vote.
    assert detect_dataset_format([qa] * 60 + [alpaca] * 40 + [alpaca] * 100) == "question-answer"
    with pytest.raises(SubnetScopeError, match="no records"):
        detect_dataset_format([])


def test_unusable_record_names_its_keys_and_index():
    with pytest.raises(SubnetScopeError, match="keys foo, bar") as caught:
        detect_format({"foo": "x", "bar": "y"})
    assert "instruction+input+output" in str(caught.value)
    with pytest.raises(SubnetScopeError, match="keys question, answer"):
        detect_format({"question": "  ", "answer": "4"})
    with pytest.raises(SubnetScopeError, match="record 1 is unusable"):
        to_examples([CASES[5][0], {"foo": "x"}])
    with pytest.raises(SubnetScopeError, match="record 0 .*no assistant turn"):
        to_examples([{"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(SubnetScopeError, match="'robot'"):
        to_example({"conversations": [{"from": "robot", "value": "beep"}]})
    with pytest.raises(SubnetScopeError, match="keys messages"):
        detect_format({"messages": []})


def test_alpaca_template_exact():
    assert format_example(PAIR, "alpaca") == "### Instruction:\nSay hi.\n\n### Response:\nhi"
    with_system = Example(instruction="Say hi.", response="hi", system="Be kind.")
    assert format_example(with_system, "alpaca") == (
        "Be kind.\n\n### Instruction:\nSay hi.\n\n### Response:\nhi"
    )


def test_chatml_template_exact():
    assert format_example(PAIR, "chatml") == CHATML
    with_system = Example(instruction="Say hi.", response="hi", system="Be kind.")
    assert format_example(with_system, "chatml") == (
        "<|im_start|>system\nBe kind.<|im_end|>\n" + CHATML
    )
    multi = to_example(CASES[17][0])
    assert format_example(multi, "chatml") == (
        "<|im_start|>system\nBe kind.<|im_end|>\n"
        "<|im_start|>user\nfirst<|im_end|>\n<|im_start|>assistant\none<|im_end|>\n"
        "<|im_start|>user\nsecond<|im_end|>\n<|im_start|>assistant\ntwo<|im_end|>"
    )


def test_chat_template_uses_the_tokenizer():
    tokenizer = FakeChatTokenizer()
    assert format_example(PAIR, "chat", tokenizer) == "user: Say hi.\nassistant: hi\n"
    assert format_prompt(PAIR, "chat", tokenizer) == "user: Say hi.\nassistant: "
    with pytest.raises(SubnetScopeError, match="chat template"):
        format_example(PAIR, "chat")
    with pytest.raises(SubnetScopeError, match="chat template"):
        format_example(PAIR, "chat", NoTemplateTokenizer())


def test_chat_template_with_a_real_tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    )
    tokenizer.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    assert format_example(PAIR, "auto", tokenizer) == "[user]Say hi.[assistant]hi"
    assert format_prompt(PAIR, "auto", tokenizer) == "[user]Say hi.[assistant]"


def test_auto_picks_chat_or_alpaca():
    assert format_example(PAIR, "auto", FakeChatTokenizer()) == "user: Say hi.\nassistant: hi\n"
    alpaca = format_example(PAIR, "alpaca")
    assert format_example(PAIR, "auto", NoTemplateTokenizer()) == alpaca
    assert format_example(PAIR) == alpaca


def test_basic_template():
    assert format_example(PAIR, "basic") == "Say hi.\nhi"
    assert format_prompt(PAIR, "basic") == "Say hi.\n"
    custom = "Q: {instruction}\nA: {response}"
    assert format_example(PAIR, "basic", basic_template=custom) == "Q: Say hi.\nA: hi"
    assert format_prompt(PAIR, "basic", basic_template=custom) == "Q: Say hi.\nA: "
    with pytest.raises(SubnetScopeError, match="exactly the fields"):
        format_example(PAIR, "basic", basic_template="{instruction} {answer}")


def test_plain_text_is_returned_as_is_for_every_template():
    example = Example(text="raw text")
    for template in ("auto", "alpaca", "chatml", "basic"):
        assert format_example(example, template) == "raw text"
        assert format_prompt(example, template) == ""
    assert format_example(example, "chat", FakeChatTokenizer()) == "raw text"


@pytest.mark.parametrize("template", ["alpaca", "chatml", "basic"])
@pytest.mark.parametrize("index", [1, 14, 17, 18])
def test_prompt_is_a_prefix_of_the_example(template, index):
    example = to_example(CASES[index][0])
    full, prompt = format_example(example, template), format_prompt(example, template)
    assert full.startswith(prompt)
    assert full[len(prompt) :].startswith(example.response)


def test_unknown_template():
    assert "chatml" in TEMPLATES
    with pytest.raises(SubnetScopeError, match="unknown prompt template 'llama'"):
        format_example(PAIR, "llama")


RECORDS = [CASES[1][0], CASES[5][0], CASES[17][0], {"text": "plain"}]


def test_load_jsonl_json_and_parquet(tmp_path: Path):
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\n", encoding="utf-8")
    as_json = tmp_path / "data.json"
    as_json.write_text(json.dumps(RECORDS), encoding="utf-8")
    parquet = tmp_path / "data.parquet"
    pd.DataFrame(RECORDS).to_parquet(parquet)

    assert load_records(str(jsonl)) == RECORDS
    assert load_records(str(as_json)) == RECORDS
    from_parquet = load_records(str(parquet))
    assert len(from_parquet) == len(RECORDS)
    # Parquet fills missing columns; conversion must still pick each record's own format.
    assert to_examples(from_parquet) == to_examples(RECORDS)
    assert isinstance(from_parquet[2]["messages"], list)


def test_load_limit_and_seeded_sample(tmp_path: Path):
    path = tmp_path / "many.jsonl"
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert load_records(str(path), limit=3) == rows[:3]
    sample = load_records(str(path), limit=5, seed=7)
    assert sample == load_records(str(path), limit=5, seed=7)
    assert len(sample) == 5 and sample != rows[:5]
    assert all(r in rows for r in sample)


def test_load_errors(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json}\n', encoding="utf-8")
    with pytest.raises(SubnetScopeError, match="line 2 is not valid JSON"):
        load_records(str(bad))
    with pytest.raises(SubnetScopeError, match="file not found: "):
        load_records(str(tmp_path / "missing.jsonl"))
    not_list = tmp_path / "obj.json"
    not_list.write_text('{"text": "x"}', encoding="utf-8")
    with pytest.raises(SubnetScopeError, match="JSON list of objects"):
        load_records(str(not_list))
    other = tmp_path / "data.csv"
    other.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(SubnetScopeError, match="unsupported file type '.csv'"):
        load_records(str(other))


def test_load_builtin_records(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(formats.BUILTIN_RECORDS, "tiny-set", lambda: [dict(r) for r in RECORDS])
    assert load_records("tiny-set", limit=2) == RECORDS[:2]
    with pytest.raises(SubnetScopeError, match="built-in record sets: demo-arithmetic, tiny-set"):
        load_records("no-such-set")


def test_demo_arithmetic_is_an_instruction_set():
    records = load_records("demo-arithmetic")
    assert len(records) == 400 and detect_dataset_format(records) == "instruction-response"
    a, b = (int(x) for x in records[0]["instruction"][8:-1].split(" + "))
    assert records[0]["response"] == f"{a} + {b} = {a + b}."
