"""Training diagnostics (issue 22): gradient, update and parameter norms against a hand
computation, activation statistics at the real tokens, the membership-inference advantage on
planted losses and against sklearn, per-text losses, and the wiring into SFT, PPO, ReLoRA and
rank-1 runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from engine.errors import SubnetScopeError
from engine.training.config import ReLoRAConfig, SFTRunConfig
from engine.training.diagnostics import (
    COLUMNS,
    DIAGNOSTICS_TABLE,
    KINDS,
    MEMORIZATION_TABLE,
    LayerProbe,
    blocks,
    chance_advantage,
    hold_back,
    layer_table,
    mia_advantage,
    module_of,
    text_losses,
)
from tests.job_support import events_of


class Toy(nn.Module):
    """Two bias-free 3×3 linear blocks in a `layers` list, called like a transformer backbone."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(
            [nn.Linear(3, 3, bias=False, dtype=torch.float64) for _ in range(2)]
        )

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def test_module_paths_drop_peft_names_and_blocks_are_found(llama) -> None:
    name = "base_model.model.model.layers.0.mlp.up_proj.lora_A.default.weight"
    assert module_of(name) == "model.layers.0.mlp.up_proj.lora_A"
    assert module_of("model.layers.3.self_attn.q_proj.bias") == "model.layers.3.self_attn.q_proj"
    assert module_of("model.layers.3.self_attn.q_proj.a") == "model.layers.3.self_attn.q_proj.a"
    backbone, found = blocks(llama.model)
    assert backbone is llama.model.model
    assert list(found) == [f"model.layers.{i}" for i in range(len(found))] and found


def test_gradient_and_update_norms_match_a_hand_computation() -> None:
    model = Toy()
    w1, w2 = (layer.weight.detach().clone() for layer in model.layers)
    x = torch.randn(2, 3, 3, dtype=torch.float64)  # (batch, seq, features)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    probe = LayerProbe(model)
    probe.arm()
    out = model(x, attention_mask=mask)
    (out * mask[..., None]).sum().backward()
    # loss = Σ_t m_t 1ᵀ W2 W1 x_t: ∂/∂W2 = 1 (Σ m h1)ᵀ, ∂/∂W1 = (W2ᵀ 1)(Σ m x)ᵀ
    m = mask[..., None].double()
    h1 = x @ w1.T
    grad2 = math.sqrt(3) * float(torch.linalg.vector_norm((m * h1).sum(dim=(0, 1))))
    grad1 = float(torch.linalg.vector_norm(w2.T @ torch.ones(3, dtype=torch.float64))) * float(
        torch.linalg.vector_norm((m * x).sum(dim=(0, 1)))
    )
    # Clip hard before the step: the recorded gradient is the one before clipping.
    total = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3))
    assert total == pytest.approx(math.hypot(grad1, grad2), rel=1e-12)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    rows = pd.DataFrame(probe.collect(step=7))
    assert set(rows["step"]) == {7}
    value = rows.set_index(["module", "kind"])["value"]
    assert value["layers.0", "grad_norm"] == pytest.approx(grad1, rel=1e-12)
    assert value["layers.1", "grad_norm"] == pytest.approx(grad2, rel=1e-12)
    coefficient = 1e-3 / (total + 1e-6)  # torch's clip factor
    assert value["layers.0", "update_norm"] == pytest.approx(0.1 * coefficient * grad1, rel=1e-9)
    assert value["layers.1", "update_norm"] == pytest.approx(0.1 * coefficient * grad2, rel=1e-9)
    after = float(torch.linalg.vector_norm(model.layers[1].weight.detach()))
    assert value["layers.1", "param_norm"] == pytest.approx(after, rel=1e-12)
    assert rows.set_index(["module", "kind"])["layer"]["layers.1", "grad_norm"] == 1
    # hooks are gone after collect: another backward records nothing
    model(x).sum().backward()
    assert probe.grads == {} and not probe.handles


def test_activation_statistics_are_over_the_real_tokens_of_training_passes() -> None:
    model = Toy()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    probe = LayerProbe(model)
    probe.arm()
    with torch.no_grad():
        model(100 * x)  # a generation-like pass: not counted
    model(x, attention_mask=mask).sum().backward()
    rows = pd.DataFrame(probe.collect(step=1)).set_index(["module", "kind"])["value"]
    with torch.no_grad():
        hidden = model.layers[0](x)[mask.bool()]  # (real tokens, 3); weights unchanged: no step
    assert rows["layers.0", "act_mean"] == pytest.approx(float(hidden.mean()), rel=1e-12)
    assert rows["layers.0", "act_std"] == pytest.approx(float(hidden.std(correction=0)), rel=1e-9)
    assert rows["layers.0", "act_rms"] == pytest.approx(
        float(hidden.square().mean().sqrt()), rel=1e-12
    )
    assert rows["layers.0", "update_norm"] == 0.0  # no optimizer step was taken


def test_layer_table_combines_a_layers_modules() -> None:
    table = pd.DataFrame(
        [
            {"step": 1, "layer": 0, "module": "l.0.q", "kind": "grad_norm", "value": 3.0},
            {"step": 1, "layer": 0, "module": "l.0.k", "kind": "grad_norm", "value": 4.0},
            {"step": 1, "layer": None, "module": "embed", "kind": "grad_norm", "value": 9.0},
            {"step": 1, "layer": 0, "module": "l.0", "kind": "act_rms", "value": 2.0},
        ],
        columns=list(COLUMNS),
    ).astype({"layer": "Int64"})
    norms = layer_table(table, "grad_norm")
    assert norms.to_dict("records") == [{"step": 1, "layer": 0, "value": 5.0}]
    assert layer_table(table, "act_rms")["value"].tolist() == [2.0]
    with pytest.raises(SubnetScopeError, match="kind must be one of"):
        layer_table(table, "loss")


def test_mia_advantage_on_planted_losses() -> None:
    same = [0.5, 1.0, 1.5, 2.0]
    planted = mia_advantage(same, same)
    assert planted["advantage"] == 0.0 and planted["auc"] == 0.5
    assert math.isnan(planted["threshold"])
    apart = mia_advantage([0.1, 0.2, 0.3], [1.0, 1.1, 1.2, 1.3])
    assert apart == {"advantage": 1.0, "threshold": 0.3, "auc": 1.0}
    # members with higher loss than non-members: the attack never beats chance
    assert mia_advantage([2.0, 3.0], [0.1, 0.2])["advantage"] == 0.0
    with pytest.raises(SubnetScopeError, match="at least one member"):
        mia_advantage([], [1.0])


def test_chance_advantage_is_the_null_level_of_small_samples() -> None:
    from math import comb

    # One-sided two-sample KS, n = m = 16: P(D ≥ k/16) = C(32, 16 − k) / C(32, 16), so the 95th
    # percentile is 6/16 (P(D ≥ 7/16) = 4.7 % ≤ 5 % < P(D ≥ 6/16) = 10.7 %).
    assert comb(32, 9) / comb(32, 16) < 0.05 < comb(32, 10) / comb(32, 16)
    rng = np.random.default_rng(0)
    levels = [chance_advantage(rng.normal(size=16), rng.normal(size=16), seed=s) for s in range(3)]
    assert levels.count(0.375) >= 2 and set(levels) <= {0.375, 0.4375}  # 1000 relabelings
    level = 0.375
    assert chance_advantage(rng.normal(size=64), rng.normal(size=64)) < level
    # separated samples: relabeling mixes them, so chance stays far below their advantage of 1
    assert chance_advantage([0.1, 0.2, 0.3, 0.4], [1.0, 1.1, 1.2, 1.3]) < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mia_advantage_agrees_with_sklearn(seed: int) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve  # a pinned dependency: never skipped

    rng = np.random.default_rng(seed)
    members = np.round(rng.normal(1.0, 0.5, 40), 1)  # rounded: ties across the two sets
    nonmembers = np.round(rng.normal(1.3, 0.5, 30), 1)
    labels = np.r_[np.ones(members.size), np.zeros(nonmembers.size)]
    scores = -np.r_[members, nonmembers]  # lower loss → more likely a member
    fpr, tpr, _ = roc_curve(labels, scores)
    ours = mia_advantage(members, nonmembers)
    assert ours["advantage"] == pytest.approx(float(np.max(tpr - fpr)), abs=1e-12)
    assert ours["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_text_losses_weight_up_to_texts_perplexity(llama) -> None:
    from engine.evaluation.perplexity import texts_perplexity

    texts = ["the cat sat on the mat", "a b", "hello there, general", "x"]
    losses = text_losses(llama.model, llama.tokenizer, texts, max_length=16, batch_size=3)
    assert np.isnan(losses[3])  # one token: nothing to predict
    counts = [
        len(llama.tokenizer(t, truncation=True, max_length=16)["input_ids"]) - 1 for t in texts[:3]
    ]
    reference = texts_perplexity(llama.model, llama.tokenizer, texts[:3], max_length=16)
    weighted = float(np.dot(losses[:3], counts) / sum(counts))
    assert weighted == pytest.approx(reference.nll, rel=1e-5)


def test_hold_back_and_config_errors() -> None:
    texts = [f"text {i}" for i in range(10)]
    train, held = hold_back(texts, 3, seed=0)
    assert len(held) == 3 and len(train) == 7 and not set(train) & set(held)
    assert hold_back(texts, 3, seed=0) == (train, held)
    with pytest.raises(SubnetScopeError, match="cannot hold back"):
        hold_back(texts[:3], 3, seed=0)
    with pytest.raises(SubnetScopeError, match="diagnostics_every must be ≥ 0"):
        SFTRunConfig(diagnostics_every=-1)
    with pytest.raises(SubnetScopeError, match="memorization_examples must be ≥ 1"):
        ReLoRAConfig(memorization_examples=0)
    assert SFTRunConfig().diagnostics_every == 0 and not SFTRunConfig().track_memorization


def _diagnostics(ctx) -> pd.DataFrame:
    table = pd.read_parquet(ctx.result_dir / DIAGNOSTICS_TABLE)
    assert list(table.columns) == list(COLUMNS) and set(table["kind"]) <= set(KINDS)
    return table


def _metric(events: list[dict], name: str) -> dict[int, float]:
    return {e["step"]: e["value"] for e in events if e.get("name") == name}


@pytest.mark.slow
def test_sft_run_records_layers_and_memorization(ctx, tiny_folder) -> None:
    from engine.training.jobs import train_sft

    params = {
        "model": tiny_folder(),
        "steps": 2,
        "batch_size": 2,
        "checkpoint_every": 2,
        "max_length": 16,
        "lr": 1e-3,
        "limit": 12,
        "diagnostics_every": 1,
        "track_memorization": True,
        "memorization_examples": 3,
    }
    train_sft(params, ctx)
    table = _diagnostics(ctx)
    assert sorted(set(table["step"])) == [1, 2] and set(table["kind"]) == set(KINDS)
    layers = layer_table(table, "grad_norm")
    assert sorted(set(layers["layer"])) == [0, 1]
    events = events_of(ctx)
    # every parameter trains here, so the total is the trainer's own pre-clip grad_norm
    ours, trainer = _metric(events, "diag/grad_norm"), _metric(events, "train/grad_norm")
    assert ours.keys() == trainer.keys() == {1, 2}
    for step in ours:
        assert ours[step] == pytest.approx(trainer[step], rel=1e-4)
    memo = pd.read_parquet(ctx.result_dir / MEMORIZATION_TABLE)
    assert memo["step"].tolist() == [0, 1, 2]
    assert (memo["members"] == 3).all() and (memo["nonmembers"] == 3).all()
    assert memo["advantage"].between(0, 1).all() and memo["auc"].between(0, 1).all()
    assert _metric(events, "mem/advantage").keys() == {0, 1, 2}


@pytest.mark.slow
def test_lora_run_names_adapter_modules_and_tracks_memorization(ctx, tiny_folder) -> None:
    from engine.training.jobs import train_lora

    params = {
        "model": tiny_folder(),
        "steps": 2,
        "batch_size": 2,
        "max_length": 16,
        "eval_texts": 3,
        "limit": 12,
        "rank_every": 2,
        "diagnostics_every": 2,
        "track_memorization": True,
        "memorization_examples": 4,  # more than the 3 held-out texts: all 3 are used
    }
    train_lora(params, ctx)
    table = _diagnostics(ctx)
    grads = table[table["kind"] == "grad_norm"]
    assert grads["module"].str.endswith((".lora_A", ".lora_B")).all()
    assert grads["module"].str.startswith("model.layers.").all()
    memo = pd.read_parquet(ctx.result_dir / MEMORIZATION_TABLE)
    assert memo["step"].tolist() == [0, 2]
    assert (memo["members"] == 4).all() and (memo["nonmembers"] == 3).all()
    assert memo["chance_advantage"].between(0, 1).all()


@pytest.mark.slow
def test_ppo_run_records_the_policys_layers(ctx, tiny_folder) -> None:
    from engine.training.jobs import train_ppo

    params = {
        "model": tiny_folder(),
        "steps": 2,
        "batch_size": 2,
        "checkpoint_every": 2,
        "max_length": 16,
        "max_completion_length": 6,
        "limit": 4,
        "reward": "length:3",
        "diagnostics_every": 2,
    }
    train_ppo(params, ctx)
    table = _diagnostics(ctx)
    assert set(table["step"]) == {2}
    acts = layer_table(table, "act_rms")
    assert sorted(acts["layer"]) == [0, 1] and (acts["value"] > 0).all()
    assert (layer_table(table, "update_norm")["value"] > 0).all()


@pytest.mark.parametrize("method", ["relora", "rank1"])
def test_plain_loops_record_layers_and_memorization(method, ctx, tiny_folder) -> None:
    from engine.training.config import Rank1Config
    from engine.training.rank1 import run_rank1
    from engine.training.relora import run_relora

    params = {
        "model": tiny_folder(),
        "steps": 4,
        "batch_size": 2,
        "max_length": 16,
        "eval_texts": 2,
        "limit": 12,
        "rank_every": 4,
        "diagnostics_every": 2,
        "track_memorization": True,
    }
    if method == "relora":
        run_relora(
            ReLoRAConfig.from_params({**params, "reset_every": 2, "restart_warmup_steps": 1}), ctx
        )
    else:
        run_rank1(Rank1Config.from_params({**params, "method": "random-projection"}), ctx)
    table = _diagnostics(ctx)
    assert sorted(set(table["step"])) == [2, 4]
    updates = table[table["kind"] == "update_norm"]
    if method == "relora":  # the warm start (step 1) trains W; steps 2–4 the low-rank factors
        low_rank = updates["module"].str.endswith((".a", ".b"))
        assert low_rank.sum() == 2 * 14 * 2  # a and b of 14 target modules, at steps 2 and 4
        assert not updates["module"].str.endswith(("_proj", ".base")).any()  # W is frozen
    else:  # the merged target weights, not the fresh rank-1 factors
        assert updates["module"].str.endswith("_proj").all() and (updates["value"] > 0).all()
    memo = pd.read_parquet(ctx.result_dir / MEMORIZATION_TABLE)
    assert memo["step"].tolist() == [0, 2, 4] and (memo["nonmembers"] == 2).all()
