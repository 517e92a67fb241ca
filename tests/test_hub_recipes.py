"""Seed 002's hub data sets by name, against a fake `datasets.load_dataset` (no network here)."""

from __future__ import annotations

import pytest

from engine.data import load_texts
from engine.errors import SubnetScopeError


class FakeSet(list):
    def __init__(self, rows, calls):
        super().__init__(rows)
        self.calls = calls

    def shuffle(self, seed=None, buffer_size=None):
        self.calls.append(("shuffle", seed, buffer_size))
        return FakeSet(list(reversed(self)), self.calls)


@pytest.fixture
def hub(monkeypatch):
    import datasets

    calls = []
    rows = {
        "allenai/c4": [{"text": f"doc {i}"} for i in range(5)],
        "allenai/real-toxicity-prompts": [
            {"prompt": {"text": "calm", "toxicity": 0.1}},
            {"prompt": {"text": "nasty one", "toxicity": 0.95}},
            {"prompt": {"text": "unknown", "toxicity": None}},
            {"prompt": {"text": "nasty two", "toxicity": 0.9}},
        ],
        "wikitext": [{"text": " = Title = \n"}, {"text": ""}, {"text": " Body text .\n"}],
    }

    def load_dataset(name, *args, **kwargs):
        calls.append(("load", name, args, kwargs))
        return FakeSet(rows[name], calls)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_c4_streams_and_shuffles_with_a_seeded_buffer(hub):
    texts = load_texts("c4", limit=2, seed=7)
    assert texts == ["doc 4", "doc 3"]
    assert ("load", "allenai/c4", ("en",), {"split": "train", "streaming": True}) in hub
    assert ("shuffle", 7, 10_000) in hub


def test_real_toxicity_prompts_filtered_at_0_9(hub):
    assert load_texts("rtp-toxic") == ["nasty one", "nasty two"]


def test_wikitext2_test_is_one_document(hub):
    [text] = load_texts("wikitext2-test")
    assert text == "= Title = \n\n\n\n\n Body text ."  # the recipe's join, empty rows kept
    assert ("load", "wikitext", ("wikitext-2-raw-v1",), {"split": "test"}) in hub


def test_offline_is_one_sentence(monkeypatch):
    import engine.data.hub_recipes as hub_recipes

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # test.sh sets both
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub_recipes, "hub_reachable", lambda: False)
    with pytest.raises(SubnetScopeError, match="cannot load 'allenai/c4': the Hugging Face hub"):
        load_texts("c4")
