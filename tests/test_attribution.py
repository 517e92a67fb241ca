"""Wanda, score files, differential selection, neuron lists and pruning on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from engine.attribution.pruning import (
    load_neuron_list,
    prune_permanently,
    pruning_mask,
    save_neuron_list,
)
from engine.attribution.scores import (
    AttributionScores,
    Selected,
    average_scores,
    differential,
    load_scores,
    select_neurons,
)
from engine.attribution.wanda import input_norms, up_weight, wanda_scores
from engine.errors import SubnetScopeError
from engine.models import apply_mask, next_token_logits
from tests.tiny import tiny_model

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_wanda_norm_is_over_all_tokens_concatenated(tiny_models, family):
    loaded = tiny_models[family]
    one, tokens_one = input_norms(loaded, [TEXT])
    four, tokens_four = input_norms(loaded, [TEXT] * 4)
    assert tokens_four == 4 * tokens_one
    for layer in one:  # N copies: the norm grows by √N (seed 002's check), not 1 (a mean)
        torch.testing.assert_close(four[layer], 2.0 * one[layer], rtol=1e-5, atol=1e-6)


def test_wanda_matches_the_formula(tiny_models):
    loaded = tiny_models["llama"]
    seen = []
    module = loaded.model.get_submodule(loaded.architecture.blocks[1].up)
    handle = module.register_forward_pre_hook(lambda m, a: seen.append(a[0][0].clone()))
    try:
        with torch.inference_mode():
            for text in (TEXT, "Another line."):
                loaded.model(**loaded.tokenizer(text, return_tensors="pt"))
    finally:
        handle.remove()
    x = torch.cat(seen)  # (tokens of both texts, hidden)
    expected = (up_weight(loaded, 1).abs() * x.norm(dim=0)).sum(1)
    scores = wanda_scores(loaded, [TEXT, "Another line."], keep_weights=True)
    torch.testing.assert_close(scores.neuron[1], expected, rtol=1e-5, atol=1e-5)
    assert scores.extra["weight.1"].shape == (48, 32)
    assert wanda_scores(tiny_models["gpt2"], [TEXT]).neuron[0].shape == (128,)


def _scores(values: dict[int, list[float]], method: str = "lrp", **meta) -> AttributionScores:
    return AttributionScores(method, {k: torch.tensor(v) for k, v in values.items()}, meta)


def test_differential_selection_order():
    general = _scores({0: [1.0, 1.0, 1.0, 1.0], 1: [1.0, 1.0, 1.0, 1.0]})
    target = _scores({0: [1.0, 5.0, 1.0, 1.0], 1: [3.0, 1.0, 1.0, 4.0]})
    diff = differential(general, target, normalize="none")
    chosen = select_neurons(diff, 3)
    assert [(s.layer, s.neuron) for s in chosen] == [(0, 1), (1, 3), (1, 0)]
    assert [s.score for s in chosen] == [-4.0, -3.0, -2.0]
    per_layer = select_neurons(diff, 1, per_layer=True)
    assert [(s.layer, s.neuron) for s in per_layer] == [(0, 1), (1, 3)]
    assert [(s.layer, s.neuron) for s in select_neurons(diff, 2, layer_pattern="1")] == [
        (1, 3),
        (1, 0),
    ]
    assert select_neurons(diff, 1, layer_pattern=r"layers\.0\.")[0].neuron == 1
    with pytest.raises(SubnetScopeError, match="matches no MLP layer"):
        select_neurons(diff, 1, layer_pattern=r"layers\.9\.")
    # sum normalization: shares of each set's total, so the larger set does not dominate
    shares = differential(general, _scores({0: [2, 10, 2, 2], 1: [6, 2, 2, 8]}), "sum")
    assert select_neurons(shares, 1)[0] == Selected(0, 1, pytest.approx(1 / 8 - 10 / 34))


def test_average_and_file_round_trip(tmp_path):
    a = _scores({0: [1.0, 3.0]}, seed=0, tokens=10)
    b = _scores({0: [3.0, 5.0]}, seed=1, tokens=20)
    mean = average_scores([a, b])
    assert mean.neuron[0].tolist() == [2.0, 4.0] and mean.metadata["tokens"] == 15
    a.extra["activation.0"] = torch.tensor([0.5, -0.5])
    loaded = load_scores(a.save(tmp_path / "a.safetensors"))
    assert loaded.method == "lrp" and loaded.neuron[0].tolist() == [1.0, 3.0]
    assert loaded.metadata["seed"] == 0 and "activation.0" in loaded.extra
    with pytest.raises(SubnetScopeError, match="cannot combine lrp and wanda"):
        average_scores([a, _scores({0: [1.0, 1.0]}, method="wanda")])
    with pytest.raises(SubnetScopeError, match="different layers"):
        differential(a, _scores({0: [1.0, 1.0, 1.0]}))
    with pytest.raises(SubnetScopeError, match="no attribution scores"):
        load_scores(tmp_path / "missing.safetensors")


def test_neuron_lists(tmp_path):
    neurons = [Selected(1, 7, -0.5), Selected(0, 2, -0.25)]
    path = save_neuron_list(neurons, tmp_path / "n.json", {"method": "lrp"})
    data = json.loads(path.read_text())
    assert data["neurons"][0] == {"layer": 1, "neuron": 7, "score": -0.5}
    back, meta = load_neuron_list(path)
    assert back == neurons and meta["method"] == "lrp"
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([{"layer": 3, "neuron": 1, "score": 0.1}]))
    assert load_neuron_list(bare)[0] == [Selected(3, 1, 0.1)]
    bare.write_text(json.dumps([{"layer": "x"}]))
    with pytest.raises(SubnetScopeError, match="integer layer and neuron"):
        load_neuron_list(bare)
    assert pruning_mask(neurons, 1).neurons == {1: (7,)}


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_reversible_pruning_restores_and_permanent_matches(family):
    loaded = tiny_model(family)
    neurons = [Selected(0, 3, -1.0), Selected(1, 5, -0.5), Selected(1, 6, -0.2)]
    before = next_token_logits(loaded, TEXT)
    masked = next_token_logits(loaded, TEXT, mask=pruning_mask(neurons))
    assert not torch.equal(before, masked)
    assert torch.equal(next_token_logits(loaded, TEXT), before)  # the call left nothing behind
    assert prune_permanently(loaded, neurons) == 3
    torch.testing.assert_close(next_token_logits(loaded, TEXT), masked, rtol=0, atol=1e-6)
    with apply_mask(loaded, pruning_mask(neurons)):  # pruning twice changes nothing more
        torch.testing.assert_close(next_token_logits(loaded, TEXT), masked, rtol=0, atol=1e-6)


# causal effects (issue 16, fix 8) -----------------------------------------------------------
PLANTED_TINY = [(1, 3), (1, 17), (1, 30)]


def planted_tiny():
    """A tiny Llama that answers every prompt with 'x' through three redundant neurons of layer 1:
    each alone still makes 'x' win, so no single ablation changes the completions — only all
    three together do. Coordinate 0 of the residual is a constant channel that switches them on,
    coordinate 1 the direction that writes 'x'."""
    from tests.tiny import char_tokenizer

    loaded = tiny_model("llama")
    inner = loaded.model.model
    x_id = char_tokenizer().convert_tokens_to_ids("x")
    with torch.no_grad():
        inner.embed_tokens.weight.mul_(0.5)
        inner.embed_tokens.weight[:, 0] = 1.0
        inner.embed_tokens.weight[:, 1] = 0.0
        mlp = inner.layers[1].mlp
        for _, n in PLANTED_TINY:
            for weight in (mlp.gate_proj.weight, mlp.up_proj.weight):
                weight[n] = 0
                weight[n, 0] = 0.3
            mlp.down_proj.weight[:, n] = 0
            mlp.down_proj.weight[1, n] = 0.3
        head = loaded.model.lm_head.weight
        head[x_id] = 0
        head[x_id, 1], head[x_id, 0] = 2.0, -1.0
    return loaded


class XScorer:
    """'Toxicity' = the share of 'x' in a completion."""

    name = "x-share"

    def score(self, texts: list[str]) -> list[float]:
        return [t.count("x") / max(len(t), 1) for t in texts]


def test_causal_effects_find_redundant_planted_neurons():
    from engine.attribution.causal import CausalConfig, causal_effects, recovery

    loaded = planted_tiny()
    decoys = [(1, n) for n in range(0, 12) if (1, n) not in PLANTED_TINY] + [(0, 5), (0, 9)]
    config = CausalConfig(prompt_limit=3, max_new_tokens=4, control="")  # it says x to all
    result = causal_effects(
        loaded,
        decoys[:5] + PLANTED_TINY + decoys[5:],
        config,
        scorer=XScorer(),
        groups={"planted": PLANTED_TINY},
    )
    assert result["baseline"]["toxicity"] == 1.0
    single = result["single"]
    # no single ablation changes the completions, but each planted neuron costs log-probability
    assert set(map(tuple, single[["layer", "neuron"]].head(3).values.tolist())) == set(PLANTED_TINY)
    assert single.head(3)["logprob_drop"].min() > 10 * single.iloc[3:]["logprob_drop"].abs().max()
    groups = result["groups"].set_index("group")
    assert groups.loc["planted", "toxicity"] == 0.0
    assert groups.loc["layer 0", "effect"] == 0.0
    assert sorted(result["causal"]) == PLANTED_TINY  # 1 and 2 of them are not enough
    cumulative = result["cumulative"].set_index("k")
    assert cumulative.loc[2, "toxicity"] == 1.0 and cumulative.loc[3, "toxicity"] == 0.0
    assert result["batching_agreement"] == {"unablated": 1.0, "all candidates": 1.0}
    assert result["layer_replay"]
    assert recovery([*PLANTED_TINY[:2], (0, 5)], result["causal"]) == {
        "selected": 3,
        "truth_size": 3,
        "hits": 2,
        "precision": 2 / 3,
        "recall": 2 / 3,
    }


def test_causal_options_are_checked():
    from engine.attribution.causal import CausalConfig, causal_effects

    with pytest.raises(SubnetScopeError, match="removal"):
        CausalConfig(removal=0)
    with pytest.raises(SubnetScopeError, match="no candidate"):
        causal_effects(planted_tiny(), [], CausalConfig(prompt_limit=1), scorer=XScorer())


def test_net_relevance_ignores_relevance_that_cancels_within_a_row():
    """The planted demo's mechanism in numbers: planted neurons pass a lot of relevance through
    their rows on general text, which cancels (net ±1). Σ|W ⊙ ∂W| (seed 002) counts it and sees
    them as general; the neuron's net relevance does not."""
    from engine.attribution.scores import scored_by

    planted = [2, 5]

    def scores(weights: list[float], relevance: list[float]) -> AttributionScores:
        return AttributionScores(
            "lrp",
            {0: torch.tensor(weights)},
            {"tokens": 10},
            {"activation.0": torch.tensor(relevance)},
        )

    #                  neuron: 0    1    2     3    4    5     6    7
    general = scores(
        [2.0, 3.0, 9.0, 3.0, 3.0, 9.0, 3.0, 3.0], [2.0, 3.0, 1.0, 3.0, 3.0, -1.0, 3.0, 3.0]
    )
    target = scores(
        [5.0, 1.0, 9.0, 1.0, 1.0, 9.0, 1.0, 1.0], [5.0, 1.0, 9.0, 1.0, 1.0, -9.0, 1.0, 1.0]
    )
    by_weights = select_neurons(differential(general, target), 2)
    assert by_weights[0].neuron == 0 and {s.neuron for s in by_weights} != set(planted)
    relevance = differential(scored_by(general, "relevance"), scored_by(target, "relevance"))
    assert sorted(s.neuron for s in select_neurons(relevance, 2)) == planted
    torch.testing.assert_close(relevance.neuron[0][5], torch.tensor(-8.0))  # |−1| − |−9|
    wanda = AttributionScores("wanda", {0: torch.ones(8)})
    with pytest.raises(SubnetScopeError, match="needs LRP scores"):
        scored_by(wanda, "relevance")
    with pytest.raises(SubnetScopeError, match="unknown score"):
        scored_by(general, "abs")
