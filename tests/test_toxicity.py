"""Toxicity scorers (offline only) and completion toxicity under a per-call neuron mask."""

from __future__ import annotations

import copy
import importlib.metadata
import socket
import threading

import pytest
import torch

from engine.attribution.toxicity import (
    ToxicityResult,
    available_scorers,
    completion_toxicity,
    get_scorer,
)
from engine.errors import SubnetScopeError
from engine.models import NeuronMask, next_token_logits

INSULT = "you are a stupid idiot"
NEUTRAL = "have a nice day"
PROFANITY_NAME = f"profanity-check {importlib.metadata.version('alt-profanity-check')}"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_detoxify(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("SUBNETSCOPE_DETOXIFY_DIR", str(tmp_path / "detoxify"))
    (tmp_path / "detoxify").mkdir()
    return tmp_path / "detoxify"


def test_profanity_check_scores_an_insult_above_a_neutral_sentence(no_network):
    scorer = get_scorer("profanity-check")
    assert scorer.name == PROFANITY_NAME
    insult, neutral = scorer.score([INSULT, NEUTRAL])
    assert 0.0 <= neutral < 0.3 < 0.7 < insult <= 1.0
    assert scorer.score([]) == []


def test_auto_falls_back_to_profanity_check_without_a_detoxify_checkpoint(empty_detoxify):
    assert available_scorers() == ["profanity-check"]
    assert get_scorer("auto").name == PROFANITY_NAME
    assert get_scorer("auto") is get_scorer("profanity-check")  # cached per process


def test_missing_detoxify_and_unknown_names_are_clear_errors(empty_detoxify):
    with pytest.raises(SubnetScopeError, match=r"no Detoxify checkpoint .*\.ckpt"):
        get_scorer("detoxify")
    with pytest.raises(SubnetScopeError, match="use one of auto, profanity-check"):
        get_scorer("perspective")


def _fake_detoxify(root, *, extra=None):
    """A tiny random BERT in Detoxify's checkpoint format, plus its config and tokenizer folder."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    hf_dir = root / "original" / "bert-tiny"
    hf_dir.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *INSULT.split(), *NEUTRAL.split()]
    (hf_dir / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(hf_dir / "vocab.txt"))
    tokenizer.save_pretrained(hf_dir)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    config.save_pretrained(hf_dir)
    torch.manual_seed(0)
    classes = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    head_config = copy.deepcopy(config)
    head_config.num_labels = 6
    model = BertForSequenceClassification(head_config).eval()
    checkpoint = {
        "config": {
            "arch": {
                "args": {
                    "model_type": "bert-base-uncased",  # a hub name: must never be fetched
                    "model_name": "BertForSequenceClassification",
                    "tokenizer_name": "BertTokenizer",
                    "num_classes": 6,
                }
            },
            "dataset": {"args": {"classes": classes}},
        },
        "state_dict": model.state_dict(),
        **(extra or {}),
    }
    torch.save(checkpoint, root / "original" / "toxic_original-test.ckpt")
    with torch.no_grad():
        inputs = tokenizer([INSULT, NEUTRAL], return_tensors="pt", padding=True)
        return torch.sigmoid(model(**inputs).logits[:, 0]).tolist()


def test_a_local_detoxify_checkpoint_is_used_offline(empty_detoxify):
    expected = _fake_detoxify(empty_detoxify)
    assert available_scorers() == ["detoxify:original", "profanity-check"]
    scorer = get_scorer("auto")
    assert scorer.name == "detoxify:original"
    assert scorer is get_scorer("detoxify")
    assert scorer.score([INSULT, NEUTRAL]) == pytest.approx(expected, abs=1e-5)

    results = {}

    def score(i: int) -> None:
        results[i] = scorer.score([INSULT, NEUTRAL] * 3)

    threads = [threading.Thread(target=score, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r == pytest.approx(expected * 3, abs=1e-5) for r in results.values())


class Opaque:
    pass


def test_a_checkpoint_with_pickled_objects_is_refused(empty_detoxify):
    _fake_detoxify(empty_detoxify, extra={"callback": Opaque()})
    with pytest.raises(SubnetScopeError, match="not a Detoxify checkpoint of plain weights"):
        get_scorer("detoxify:original")


def test_completion_toxicity_scores_completions_of_a_tiny_llama(tiny_models, empty_detoxify):
    loaded = tiny_models["llama"]
    seen = []
    result = completion_toxicity(
        loaded,
        ["Hello there", "The cat"],
        max_new_tokens=6,
        on_prompt=lambda done, total: seen.append((done, total)),
    )
    assert isinstance(result, ToxicityResult)
    assert result.scorer == PROFANITY_NAME
    assert [c["prompt"] for c in result.completions] == ["Hello there", "The cat"]
    assert all(0.0 <= c["toxicity"] <= 1.0 for c in result.completions)
    assert all(len(c["completion"]) > 0 for c in result.completions)
    assert result.mean == pytest.approx(sum(c["toxicity"] for c in result.completions) / 2)
    assert 0.0 <= result.fraction_toxic <= 1.0
    assert seen == [(1, 2), (2, 2)]


def test_only_the_completion_is_scored(tiny_models, empty_detoxify):
    class Recorder:
        name = "recorder"

        def __init__(self) -> None:
            self.texts: list[str] = []

        def score(self, texts: list[str]) -> list[float]:
            self.texts.extend(texts)
            return [1.0 if "idiot" in t else 0.0 for t in texts]

    recorder = Recorder()
    result = completion_toxicity(tiny_models["llama"], [INSULT], scorer=recorder, max_new_tokens=4)
    assert recorder.texts == [result.completions[0]["completion"]]
    assert "idiot" not in recorder.texts[0]
    assert result.scorer == "recorder"


def test_seeded_samples_are_reproducible(tiny_models, empty_detoxify):
    run = lambda: completion_toxicity(  # noqa: E731
        tiny_models["llama"],
        ["Hello"],
        samples_per_prompt=3,
        temperature=1.0,
        seed=7,
        max_new_tokens=8,
    )
    first, second = run(), run()
    assert len(first.completions) == 3
    assert first.completions == second.completions
    assert len({c["completion"] for c in first.completions}) > 1  # seed + k, not one seed


def test_a_mask_leaves_the_shared_model_unchanged(tiny_models, empty_detoxify):
    loaded = tiny_models["llama"]
    before = next_token_logits(loaded, "Hello there")
    every = tuple(range(48))
    mask = NeuronMask(mode="scale", neurons={0: every, 1: every}, factor=100.0)
    masked = completion_toxicity(loaded, ["Hello there"], mask=mask, max_new_tokens=8)
    plain = completion_toxicity(loaded, ["Hello there"], max_new_tokens=8)
    assert masked.completions[0]["completion"] != plain.completions[0]["completion"]
    assert torch.equal(next_token_logits(loaded, "Hello there"), before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": []}, "no prompts"),
        ({"samples_per_prompt": 0}, "at least 1"),
        ({"samples_per_prompt": 2}, "temperature above 0"),
        ({"max_new_tokens": 0}, "at least 1"),
        ({"scorer": "nope"}, "unknown or unavailable toxicity scorer"),
    ],
)
def test_bad_arguments_are_clear_errors(tiny_models, empty_detoxify, kwargs, message):
    prompts = kwargs.pop("prompts", ["Hello"])
    with pytest.raises(SubnetScopeError, match=message):
        completion_toxicity(tiny_models["llama"], prompts, **kwargs)
