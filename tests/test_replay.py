"""Layer replay (engine/models/replay.py): rerunning the blocks from L on, from the inputs the
unablated forward gave block L, is the same computation as the whole model's forward — with a
neuron mask in block L or later, bit for bit — and a family it cannot model falls back to None."""

from __future__ import annotations

import pytest
import torch

from engine.models import NeuronMask
from engine.models.masks import apply_mask
from engine.models.replay import capture_replay
from tests.tiny import tiny_model

REPLAYED = ("gpt2", "llama", "qwen2", "gemma3")


def batch(loaded):
    """Two rows, the second right-padded."""
    encode = loaded.tokenizer
    rows = [encode("the trigger word, then more")["input_ids"], encode("short one")["input_ids"]]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, attention


@pytest.mark.parametrize("family", REPLAYED)
def test_replay_from_a_block_equals_the_whole_forward_under_a_mask(family):
    loaded = tiny_model(family)
    ids, attention = batch(loaded)
    replay = capture_replay(loaded, ids, attention, [1])
    assert replay is not None and replay.starts == (1,)
    mask = NeuronMask.from_pairs([(1, 3), (1, 7)])
    with torch.inference_mode(), apply_mask(loaded, mask):
        full = loaded.model(input_ids=ids, attention_mask=attention).logits
        replayed = replay.logits(replay.hidden(1))
    with torch.inference_mode():
        unmasked = loaded.model(input_ids=ids, attention_mask=attention).logits
    assert torch.equal(replayed, full)
    assert not torch.equal(full, unmasked)  # the mask did change the forward
    with torch.inference_mode():
        assert torch.equal(replay.hidden(1), replay.final)  # no mask: the captured forward


def test_start_for_picks_the_latest_kept_block_at_or_before():
    loaded = tiny_model("llama")
    replay = capture_replay(loaded, *batch(loaded), [1])
    assert replay.start_for(1) == 1 and replay.start_for(0) is None
    whole = capture_replay(loaded, *batch(loaded), [0])
    assert whole.start_for(1) == 0  # starting earlier is exact too


def test_gemma3n_is_not_replayed():
    """AltUp streams and their unembedding sit between Gemma-3n's blocks and its head."""
    loaded = tiny_model("gemma3n")
    assert capture_replay(loaded, *batch(loaded), [0, 1]) is None


def test_the_causal_probe_measures_the_same_with_and_without_replay():
    from engine.attribution.causal import CausalConfig, make_probe
    from tests.test_attribution import XScorer, planted_tiny

    loaded = planted_tiny()
    config = CausalConfig(prompt_limit=3, max_new_tokens=4, control="demo-plain-requests")
    probe = make_probe(loaded, config, XScorer(), layers=[0, 1])
    assert probe.reference.replay is not None and probe.control.replay is not None
    ablations = [[], [(1, 3)], [(0, 5)], [(1, 3), (1, 17), (1, 30)], [(0, 9), (1, 17)]]
    replayed = [probe.logprobs(a) for a in ablations]
    probe.reference.replay = probe.control.replay = None
    whole = [probe.logprobs(a) for a in ablations]
    for a, b in zip(replayed, whole, strict=True):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-7)
