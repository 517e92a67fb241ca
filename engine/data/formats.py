"""Instruction-dataset records: format detection, conversion, prompt templates, file loading."""

from __future__ import annotations

import json
import math
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.data.demo_tasks import DEMO_ARITHMETIC, demo_arithmetic_records
from engine.data.sources import read_jsonl_objects, sample_texts
from engine.errors import SubnetScopeError


@dataclass(frozen=True)
class Example:
    """One training example: an instruction/response pair (optionally multi-turn) or plain text."""

    instruction: str | None = None
    response: str | None = None
    text: str | None = None
    system: str | None = None
    messages: tuple[dict, ...] | None = None


@dataclass(frozen=True)
class DatasetFormat:
    """A record layout recognised by its keys; `convert` turns a matching record into an Example.

    Keys in `empty_ok` (an optional input/context/system) must be present but may be blank.
    """

    name: str
    keys: tuple[str, ...]
    convert: Callable[[Mapping[str, Any]], Example] = field(repr=False, compare=False)
    empty_ok: tuple[str, ...] = ()

    def matches(self, record: Mapping[str, Any]) -> bool:
        for key in self.keys:
            if key not in record:
                return False
            value = record[key]
            if key in self.empty_ok:
                if not (value is None or isinstance(value, str)):
                    return False
            elif not _usable(value, turns=key in _TURN_KEYS):
                return False
        return True

    def describe(self) -> str:
        return "+".join(self.keys)


_TURN_KEYS = ("messages", "conversations")


def _usable(value: Any, turns: bool) -> bool:
    """A non-empty list of turns for turn keys; a non-blank string or finite number otherwise."""
    if turns:
        return isinstance(value, (list, tuple)) and len(value) > 0
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _with_extra(main: Any, extra: Any) -> str:
    """`main`, followed by `extra` as its own paragraph unless `extra` is blank."""
    if isinstance(extra, str) and extra.strip():
        return f"{_text(main)}\n\n{extra}"
    return _text(main)


def _pair(
    instruction: str, response: str, extra: str | None = None
) -> Callable[[Mapping[str, Any]], Example]:
    def convert(record: Mapping[str, Any]) -> Example:
        prompt = record[instruction]
        if extra is not None:
            prompt = _with_extra(prompt, record[extra])
        return Example(instruction=_text(prompt), response=_text(record[response]))

    return convert


def _qa(instruction: str, response: str, name: str | None = None) -> DatasetFormat:
    """The two-field format whose `instruction` key holds the prompt and `response` the reply."""
    return DatasetFormat(
        name or f"{instruction}-{response}", (instruction, response), _pair(instruction, response)
    )


def _system_user_assistant(record: Mapping[str, Any]) -> Example:
    system = record["system"]
    return Example(
        instruction=_text(record["user"]),
        response=_text(record["assistant"]),
        system=system if isinstance(system, str) and system.strip() else None,
    )


def _from_turns(turns: list[dict[str, str]], layout: str) -> Example:
    """Last assistant turn and the user turn before it; turns after that one carry no target."""
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is None:
        raise SubnetScopeError(f"{layout} record has no assistant turn to learn from")
    user = max((i for i, t in enumerate(turns[:last]) if t["role"] == "user"), default=None)
    if user is None:
        raise SubnetScopeError(f"{layout} record has no user turn before its last assistant turn")
    system = next((t["content"] for t in turns if t["role"] == "system"), None)
    return Example(
        instruction=turns[user]["content"],
        response=turns[last]["content"],
        system=system if system and system.strip() else None,
        messages=tuple(turns[: last + 1]),
    )


_MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def _chat_turns(
    record: Mapping[str, Any], key: str, role_key: str, text_key: str, roles: Mapping[str, str]
) -> Example:
    """Turns of a `messages` ({role, content}) or ShareGPT `conversations` ({from, value}) list."""
    turns = []
    for i, turn in enumerate(record[key]):
        if not isinstance(turn, Mapping):
            raise SubnetScopeError(
                f"{key} turn {i} is not an object with {role_key} and {text_key}"
            )
        role, text = turn.get(role_key), turn.get(text_key)
        if role not in roles:
            raise SubnetScopeError(
                f"{key} turn {i} has {role_key} {role!r} (expected {', '.join(roles)})"
            )
        if not isinstance(text, str):
            raise SubnetScopeError(f"{key} turn {i} has no text {text_key}")
        turns.append({"role": roles[role], "content": text})
    return _from_turns(turns, key)


def _messages(record: Mapping[str, Any]) -> Example:
    return _chat_turns(record, "messages", "role", "content", _MESSAGE_ROLES)


def _conversations(record: Mapping[str, Any]) -> Example:
    return _chat_turns(record, "conversations", "from", "value", _SHAREGPT_ROLES)


def _plain_text(record: Mapping[str, Any]) -> Example:
    return Example(text=_text(record["text"]))


# Most specific first: a record matches the first format whose keys it has.
FORMATS: tuple[DatasetFormat, ...] = (
    DatasetFormat(
        "system-user-assistant",
        ("system", "user", "assistant"),
        _system_user_assistant,
        empty_ok=("system",),
    ),
    DatasetFormat(
        "dolly",
        ("instruction", "context", "response"),
        _pair("instruction", "response", extra="context"),
        empty_ok=("context",),
    ),
    DatasetFormat(
        "alpaca",
        ("instruction", "input", "output"),
        _pair("instruction", "output", extra="input"),
        empty_ok=("input",),
    ),
    DatasetFormat(
        "context-question-answer",
        ("context", "question", "answer"),
        _pair("question", "answer", extra="context"),
        empty_ok=("context",),
    ),
    _qa("instruction", "response"),
    _qa("instruction", "output"),
    _qa("question", "answer"),
    _qa("question", "response"),
    _qa("prompt", "completion"),
    _qa("prompt", "response"),
    _qa("query", "response"),
    _qa("problem", "solution"),
    _qa("input", "output"),
    _qa("context", "response"),
    _qa("human", "assistant"),
    _qa("user", "assistant"),
    _qa("message_1", "message_2", name="camel-ai"),
    DatasetFormat("messages", ("messages",), _messages),
    DatasetFormat("sharegpt", ("conversations",), _conversations),
    DatasetFormat("text", ("text",), _plain_text),
)

DETECT_SAMPLE = 100


def detect_format(record: Mapping[str, Any]) -> DatasetFormat:
    """The first format in FORMATS whose keys the record has with non-empty values."""
    if not isinstance(record, Mapping):
        raise SubnetScopeError(
            f"a record is a {type(record).__name__}, not an object with named fields"
        )
    for fmt in FORMATS:
        if fmt.matches(record):
            return fmt
    keys = ", ".join(str(k) for k in record) or "none"
    supported = ", ".join(f.describe() for f in FORMATS)
    raise SubnetScopeError(
        f"no supported format fits a record with keys {keys} "
        f"(each needs non-empty values for one key set of: {supported})"
    )


def detect_dataset_format(records: Sequence[Mapping[str, Any]]) -> str:
    """Name of the format most of the first 100 records have (ties: the first seen)."""
    if len(records) == 0:
        raise SubnetScopeError("the dataset has no records to detect a format from")
    counts: Counter[str] = Counter()
    first_error: SubnetScopeError | None = None
    for record in records[:DETECT_SAMPLE]:
        try:
            counts[detect_format(record).name] += 1
        except SubnetScopeError as exc:
            first_error = first_error or exc
    if not counts:
        assert first_error is not None
        raise first_error
    return counts.most_common(1)[0][0]


def to_example(record: Mapping[str, Any]) -> Example:
    """The record converted by its own detected format."""
    return detect_format(record).convert(record)


def to_examples(records: Sequence[Mapping[str, Any]]) -> list[Example]:
    """Every record converted by its own format; the first unusable one raises, naming its index."""
    examples = []
    for index, record in enumerate(records):
        try:
            examples.append(to_example(record))
        except SubnetScopeError as exc:
            raise SubnetScopeError(f"record {index} is unusable: {exc}") from exc
    return examples


TEMPLATES = ("auto", "chat", "alpaca", "chatml", "basic")
_SENTINEL = "\x00response\x00"


def example_messages(example: Example) -> list[dict[str, str]]:
    """The example as chat turns (system, user, assistant), ending with the assistant's reply."""
    if example.messages is not None:
        return [dict(m) for m in example.messages]
    instruction, response = _pair_of(example)
    turns = [{"role": "system", "content": example.system}] if example.system else []
    turns.append({"role": "user", "content": instruction})
    turns.append({"role": "assistant", "content": response})
    return turns


def _pair_of(example: Example) -> tuple[str, str]:
    if example.instruction is None or example.response is None:
        raise SubnetScopeError("the example has neither text nor an instruction and a response")
    return example.instruction, example.response


def _resolve_template(template: str, tokenizer: Any) -> str:
    if template not in TEMPLATES:
        raise SubnetScopeError(f"unknown prompt template '{template}' (use {', '.join(TEMPLATES)})")
    if template == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "alpaca"
    if template == "chat" and not getattr(tokenizer, "chat_template", None):
        raise SubnetScopeError(
            "the 'chat' template needs a tokenizer with a chat template; "
            "use 'alpaca', 'chatml' or 'basic' for this model"
        )
    return template


def _alpaca(example: Example, response: str) -> str:
    instruction, _ = _pair_of(example)
    head = f"{example.system}\n\n" if example.system else ""
    return f"{head}### Instruction:\n{instruction}\n\n### Response:\n{response}"


def _chatml_turn(turn: Mapping[str, str]) -> str:
    return f"<|im_start|>{turn['role']}\n{turn['content']}<|im_end|>"


def _basic(example: Example, basic_template: str) -> tuple[str, str]:
    """(full text, prompt) for `basic_template`; the prompt ends where {response} begins."""
    instruction, response = _pair_of(example)
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(basic_template) if name}
    except ValueError as exc:
        raise SubnetScopeError(f"the basic template is malformed ({exc})") from exc
    if fields != {"instruction", "response"}:
        raise SubnetScopeError(
            "the basic template must use exactly the fields {instruction} and {response}"
        )
    full = basic_template.format(instruction=instruction, response=response)
    marked = basic_template.format(instruction=instruction, response=_SENTINEL)
    return full, marked[: marked.index(_SENTINEL)]


def _chat(tokenizer: Any, turns: list[dict[str, str]], generation_prompt: bool) -> str:
    try:
        rendered = tokenizer.apply_chat_template(
            turns, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as exc:  # jinja and template code raise many types (e.g. no system role)
        raise SubnetScopeError(
            f"the tokenizer's chat template rejected an example ({exc})"
        ) from exc
    if not isinstance(rendered, str):
        raise SubnetScopeError("the tokenizer's chat template did not return text")
    return rendered


def format_example(
    example: Example,
    template: str = "auto",
    tokenizer: Any = None,
    basic_template: str = "{instruction}\n{response}",
) -> str:
    """The full training text (prompt and response) of `example` in `template`."""
    template = _resolve_template(template, tokenizer)
    if example.text is not None:
        return example.text
    if template == "alpaca":
        return _alpaca(example, _pair_of(example)[1])
    if template == "chatml":
        return "\n".join(_chatml_turn(t) for t in example_messages(example))
    if template == "chat":
        return _chat(tokenizer, example_messages(example), generation_prompt=False)
    return _basic(example, basic_template)[0]


def format_prompt(
    example: Example,
    template: str = "auto",
    tokenizer: Any = None,
    basic_template: str = "{instruction}\n{response}",
) -> str:
    """The text of `format_example` up to where the response begins ("" for plain text)."""
    template = _resolve_template(template, tokenizer)
    if example.text is not None:
        # Plain text has no prompt: all of it is the part to score.
        return ""
    if template == "alpaca":
        return _alpaca(example, "")
    if template == "chatml":
        turns = example_messages(example)[:-1]
        return "".join(f"{_chatml_turn(t)}\n" for t in turns) + "<|im_start|>assistant\n"
    if template == "chat":
        return _chat(tokenizer, example_messages(example)[:-1], generation_prompt=True)
    return _basic(example, basic_template)[1]


# Named record sets that `load_records` accepts besides files; modules may register more here.
BUILTIN_RECORDS: dict[str, Callable[[], list[dict]]] = {DEMO_ARITHMETIC: demo_arithmetic_records}
RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")


def _read_json(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SubnetScopeError(f"'{path}' is not valid JSON ({exc})") from exc
    if not isinstance(data, list):
        raise SubnetScopeError(f"'{path}' must hold a JSON list of objects")
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise SubnetScopeError(f"'{path}' item {index} is not a JSON object")
    return data


def _plain(value: Any) -> Any:
    """Python values for what pandas gives back: numpy arrays, numpy scalars, NaN for missing."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _read_parquet(path: Path) -> list[dict]:
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt or non-parquet file
        raise SubnetScopeError(f"cannot read '{path}' as parquet ({exc})") from exc
    return [{str(k): _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")]


def load_records(source: str, limit: int | None = None, seed: int | None = None) -> list[dict]:
    """Records from a .jsonl/.json/.parquet file or a BUILTIN_RECORDS name.

    With `limit`, the first `limit` records or, given `seed`, a seeded sample of that many.
    """
    source = source.strip()
    if not source:
        raise SubnetScopeError("no record source given: name a .jsonl, .json or .parquet file")
    if limit is not None and limit < 0:
        raise SubnetScopeError(f"the record limit must be zero or more, not {limit}")
    path = Path(source).expanduser()
    if source in BUILTIN_RECORDS:
        records = list(BUILTIN_RECORDS[source]())
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            records = read_jsonl_objects(path)
        elif suffix == ".json":
            records = _read_json(path)
        elif suffix == ".parquet":
            records = _read_parquet(path)
        else:
            raise SubnetScopeError(
                f"cannot read records from '{source}': unsupported file type "
                f"'{suffix or '(none)'}' (use {', '.join(RECORD_SUFFIXES)})"
            )
    elif path.is_dir():
        raise SubnetScopeError(
            f"'{source}' is a folder; name a {', '.join(RECORD_SUFFIXES)} file inside it"
        )
    else:
        builtins = (
            f" (built-in record sets: {', '.join(BUILTIN_RECORDS)})" if BUILTIN_RECORDS else ""
        )
        raise SubnetScopeError(f"file not found: '{source}'{builtins}")
    if not records:
        raise SubnetScopeError(f"'{source}' contains no records")
    if limit is not None:
        records = sample_texts(records, limit, seed) if seed is not None else records[:limit]
    return records
