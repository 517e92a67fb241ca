"""Unit tests for engine.data: file formats, field detection, seeded samples, corpus, windows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from engine.data import (
    TextSource,
    demo_general_corpus,
    load_texts,
    sample_texts,
    token_windows,
)
from engine.errors import SubnetScopeError

SENTENCES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "the bird sang a song in the tree",
    "one two three four five six seven eight nine ten",
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<bos>", "<eos>"])
    backend.train_from_iterator(SENTENCES, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- sources -------------------------------------------------------------------------------------


def test_txt_documents_split_on_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "docs.txt"
    f.write_text("first doc\nstill first\n\n  \nsecond doc\n\n\n\nthird\n")
    assert load_texts(str(f)) == ["first doc\nstill first", "second doc", "third"]
    assert load_texts(str(f), limit=2) == ["first doc\nstill first", "second doc"]


def test_jsonl_field_auto_detection_and_explicit_field(tmp_path: Path) -> None:
    f = _write_jsonl(
        tmp_path / "d.jsonl",
        [{"id": 1, "prompt": "p1", "content": "c1"}, {"id": 2, "prompt": "p2", "content": "c2"}],
    )
    assert load_texts(str(f)) == ["c1", "c2"]  # content ranks above prompt
    assert load_texts(str(f), text_field="prompt") == ["p1", "p2"]
    rows = [{"id": 1, "body_md": "x"}, {"id": 2, "body_md": ""}]
    other = _write_jsonl(tmp_path / "o.jsonl", rows)
    assert load_texts(str(other)) == ["x"]  # first string field; empty texts dropped
    with pytest.raises(SubnetScopeError, match="no field 'missing'"):
        load_texts(str(f), text_field="missing")
    numbers = _write_jsonl(tmp_path / "n.jsonl", [{"a": 1}])
    with pytest.raises(SubnetScopeError, match="no text field"):
        load_texts(str(numbers))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(SubnetScopeError, match="line 2"):
        load_texts(str(bad))


def test_parquet_field_auto_detection(tmp_path: Path) -> None:
    f = tmp_path / "d.parquet"
    pd.DataFrame({"label": [0, 1], "question": ["q1", "q2"], "text": ["t1", "t2"]}).to_parquet(f)
    assert load_texts(str(f)) == ["t1", "t2"]
    assert load_texts(str(f), text_field="question") == ["q1", "q2"]


def test_text_source_dataclass_loads(tmp_path: Path) -> None:
    f = _write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}"} for i in range(10)])
    src = TextSource(str(f), limit=3, seed=1)
    assert src.load() == load_texts(str(f), limit=3, seed=1)
    assert len(src.load()) == 3
    assert TextSource().load() == demo_general_corpus()


def test_missing_file_and_bad_extension_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SubnetScopeError, match="file not found"):
        load_texts(str(tmp_path / "nope.jsonl"))
    with pytest.raises(SubnetScopeError, match="file not found"):
        load_texts("./nope")
    f = tmp_path / "d.csv"
    f.write_text("text\nhello\n")
    with pytest.raises(SubnetScopeError, match=r"unsupported file type '\.csv'"):
        load_texts(str(f))
    with pytest.raises(SubnetScopeError, match="no text source"):
        load_texts("  ")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    with pytest.raises(SubnetScopeError, match="contains no text"):
        load_texts(str(empty))
    with pytest.raises(SubnetScopeError, match="is a folder"):
        load_texts(str(tmp_path))


def test_offline_hub_id_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # The hub libraries read these variables at import; patch them too if already imported.
    for module, attr in [
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_DATASETS_OFFLINE"),
    ]:
        if module in sys.modules:
            monkeypatch.setattr(sys.modules[module], attr, True, raising=False)
    with pytest.raises(SubnetScopeError, match="cannot load dataset 'someone/no-such-set'"):
        load_texts("someone/no-such-set")


# --- sampling ------------------------------------------------------------------------------------


def test_sample_texts_is_seeded() -> None:
    texts = [f"t{i}" for i in range(100)]
    a = sample_texts(texts, 10, seed=0)
    assert a == sample_texts(texts, 10, seed=0)
    assert a != sample_texts(texts, 10, seed=1)
    assert len(set(a)) == 10
    assert set(a) <= set(texts)
    assert sorted(sample_texts(texts, 500, seed=3)) == sorted(texts)


def test_load_texts_limit_with_seed_samples(tmp_path: Path) -> None:
    f = _write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}"} for i in range(50)])
    a = load_texts(str(f), limit=5, seed=7)
    assert a == load_texts(str(f), limit=5, seed=7)
    assert a != load_texts(str(f), limit=5, seed=8)
    assert load_texts(str(f), limit=5) == [f"t{i}" for i in range(5)]


# --- corpus --------------------------------------------------------------------------------------


def test_demo_corpus_is_english_paragraphs_and_deterministic() -> None:
    docs = demo_general_corpus()
    assert len(docs) > 100
    assert docs == demo_general_corpus()
    assert docs is not demo_general_corpus()  # callers may mutate their copy
    assert all(len(d) >= 200 and d == " ".join(d.split()) for d in docs)
    words = " ".join(docs).lower().split()
    common = sum(w in {"the", "a", "of", "is", "to", "and", "in"} for w in words)
    assert common / len(words) > 0.1
    assert load_texts("demo-general") == docs
    assert len(demo_general_corpus(min_chars=600)) < len(docs)


# --- windows -------------------------------------------------------------------------------------


def test_token_windows_shape_bos_and_eos(tokenizer: PreTrainedTokenizerFast) -> None:
    texts = SENTENCES * 3
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    stream: list[int] = []  # texts joined by EOS, as the function documents
    for i, text in enumerate(texts):
        stream += ([eos] if i else []) + tokenizer(text, add_special_tokens=False)["input_ids"]

    windows = token_windows(tokenizer, texts, length=8)  # BOS + 7 stream tokens each
    n = len(stream) // 7
    assert windows.dtype == torch.long
    assert windows.shape == (n, 8)
    assert (windows[:, 0] == bos).all()
    assert windows[:, 1:].flatten().tolist() == stream[: n * 7]

    no_bos = token_windows(tokenizer, texts, length=8, add_bos=False)
    assert no_bos.shape == (len(stream) // 8, 8)
    assert no_bos.flatten().tolist() == stream[: len(no_bos) * 8]


def test_token_windows_sampling_is_seeded(tokenizer: PreTrainedTokenizerFast) -> None:
    texts = SENTENCES * 20
    every = token_windows(tokenizer, texts, length=4)
    a = token_windows(tokenizer, texts, length=4, max_windows=5, seed=0)
    assert a.shape == (5, 4)
    assert torch.equal(a, token_windows(tokenizer, texts, length=4, max_windows=5, seed=0))
    assert not torch.equal(a, token_windows(tokenizer, texts, length=4, max_windows=5, seed=1))
    assert all(any(torch.equal(row, w) for w in every) for row in a)
    assert torch.equal(token_windows(tokenizer, texts, length=4, max_windows=10**6), every)


def test_token_windows_too_little_text(tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(SubnetScopeError, match="fewer than one window"):
        token_windows(tokenizer, ["the cat"], length=16)
