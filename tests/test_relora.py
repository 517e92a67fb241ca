"""ReLoRA and rank-1 merging on a tiny model: continuity across a merge, the partial optimizer
reset, the jagged schedule, rank-1 updates whose sum grows in rank, and the written results."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from engine.errors import SubnetScopeError
from engine.training.config import Rank1Config, ReLoRAConfig
from engine.training.rank_tracking import COLUMNS, RANK_TABLE
from engine.training.relora import (
    LowRankLinear,
    attach_low_rank,
    jagged_lr,
    low_rank_parameters,
    merge_and_reset,
    prune_optimizer_state,
    relora_lr,
    text_batches,
    train_step,
)
from tests.job_support import events_of
from tests.tiny import char_tokenizer, tiny_model

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SMALL = {
    "steps": 6,
    "batch_size": 2,
    "max_length": 32,
    "eval_texts": 2,
    "limit": 24,
    "lr": 1e-2,
    "rank_every": 1,
}


def _model():
    import copy

    model = copy.deepcopy(tiny_model("llama").model).float().train()
    for module in model.modules():  # no dropout: logits must be comparable call to call
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _batch():
    texts = ["the quick brown fox jumps", "def f(x):\n    return x + 1", "2 + 3 = 5", "hello"]
    return next(text_batches(texts, char_tokenizer(), 4, 32, seed=0))


def test_merge_and_reset_keeps_logits_and_prunes_the_optimizer():
    torch.manual_seed(0)
    model = _model()
    layers = attach_low_rank(
        model, TARGETS, rank=4, scale=2.0, generator=torch.Generator().manual_seed(0)
    )
    assert len(layers) == 2 * 7 and all(isinstance(v, LowRankLinear) for v in layers.values())
    assert {p for p in model.parameters() if p.requires_grad} == set(low_rank_parameters(layers))
    optimizer = torch.optim.AdamW(low_rank_parameters(layers), lr=5e-2)
    batch = _batch()
    for _ in range(3):
        train_step(model, batch)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert any(float(layer.b.detach().abs().max()) > 0 for layer in layers.values())
    weights = {n: layer.weight().detach().clone() for n, layer in layers.items()}
    with torch.no_grad():
        before = model(input_ids=batch["input_ids"]).logits
    a_before = {n: layer.a.detach().clone() for n, layer in layers.items()}
    counts = merge_and_reset(layers, optimizer, prune=0.9)
    with torch.no_grad():
        after = model(input_ids=batch["input_ids"]).logits
    assert torch.allclose(before, after, atol=1e-5, rtol=0)  # the function is continuous
    for name, layer in layers.items():
        assert float(layer.b.detach().abs().max()) == 0  # B zeroed
        assert not torch.equal(layer.a, a_before[name])  # A re-initialized
        torch.testing.assert_close(layer.base.weight, weights[name], atol=1e-6, rtol=0)
    assert counts["kept_fraction"] == pytest.approx(0.1, abs=0.01)


def test_prune_optimizer_state_keeps_exactly_the_largest():
    p = torch.nn.Parameter(torch.zeros(10, 20))
    optimizer = torch.optim.Adam([p], lr=1e-3)
    p.grad = torch.randn(10, 20, generator=torch.Generator().manual_seed(1))
    optimizer.step()
    state = optimizer.state[p]
    original = {k: state[k].clone() for k in ("exp_avg", "exp_avg_sq")}
    counts = prune_optimizer_state(optimizer, [p], prune=0.99)
    assert counts == {"kept": 4, "total": 400, "kept_fraction": 0.01, "orphans": 0}
    for key, moment in original.items():
        kept = state[key] != 0
        assert int(kept.sum()) == 2  # round(0.01 · 200)
        top = torch.topk(moment.abs().flatten(), 2).indices
        assert set(kept.flatten().nonzero().flatten().tolist()) == set(top.tolist())
        assert torch.equal(state[key][kept], moment[kept])  # the kept entries are unchanged
    prune_optimizer_state(optimizer, [p], prune=0.0)  # keeps everything left
    assert int((state["exp_avg"] != 0).sum()) == 2


def test_no_first_moment_survives_without_its_second():
    p = torch.nn.Parameter(torch.zeros(1, 4))
    optimizer = torch.optim.Adam([p], lr=1e-3)
    p.grad = torch.ones(1, 4)
    optimizer.step()
    state = optimizer.state[p]
    state["exp_avg"].copy_(torch.tensor([[9.0, 1.0, 0.1, 0.2]]))  # largest m: entry 0
    state["exp_avg_sq"].copy_(torch.tensor([[0.1, 9.0, 0.2, 0.3]]))  # largest v: entry 1
    counts = prune_optimizer_state(optimizer, [p], prune=0.75)  # keep 1 of 4 in each
    assert counts["orphans"] == 1  # m kept at entry 0, but its v was pruned
    assert state["exp_avg"].tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert state["exp_avg_sq"].tolist() == [[0.0, 9.0, 0.0, 0.0]]


def test_the_step_after_a_reset_stays_bounded():
    # After a merge B = 0, so A's gradient is exactly 0: an entry with m ≠ 0 and v = 0 would
    # step by lr · m̂ / ε. Every entry must move by at most a few lr.
    torch.manual_seed(0)
    model = _model()
    layers = attach_low_rank(
        model, TARGETS, rank=4, scale=2.0, generator=torch.Generator().manual_seed(0)
    )
    lr = 1e-2
    optimizer = torch.optim.AdamW(low_rank_parameters(layers), lr=lr, weight_decay=0.0)
    batches = [_batch()] * 6
    for batch in batches[:5]:
        train_step(model, batch)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    merge_and_reset(layers, optimizer, prune=0.99)
    a_before = {n: layer.a.detach().clone() for n, layer in layers.items()}
    train_step(model, batches[5])
    optimizer.step()
    worst = max(float((layer.a - a_before[n]).abs().max()) for n, layer in layers.items())
    assert worst <= 10 * lr


def test_jagged_schedule_warms_up_again_after_each_reset():
    kw = {"steps": 40, "warmup": 4, "reset_every": 10, "restart_warmup": 2, "min_ratio": 0.1}
    lrs = np.array([jagged_lr(s, **kw) for s in range(1, 41)])
    np.testing.assert_allclose(lrs[:4], [0.25, 0.5, 0.75, 1.0])  # initial warmup
    assert np.all(np.diff(lrs[4:10]) < 0)  # cosine decay within the first cycle
    for reset in (10, 20, 30):
        first, second = lrs[reset], lrs[reset + 1]  # steps reset+1, reset+2
        assert first < lrs[reset - 1] and first == pytest.approx(second / 2)  # jagged drop
        assert second > first and np.all(np.diff(lrs[reset + 1 : reset + 10]) < 0)
    assert lrs[-1] == pytest.approx(0.1, abs=0.01) and lrs.min() > 0
    # Without restarts inside the run it is a plain warmup + cosine.
    plain = [jagged_lr(s, **{**kw, "reset_every": 100}) for s in range(5, 41)]
    assert np.all(np.diff(plain) < 0)


def test_relora_run_merges_continuously_and_writes_the_model(ctx, tiny_folder, monkeypatch):
    import engine.training.relora as relora
    from engine.training.relora import run_relora

    runs, gaps = [], []
    real_setup, real_merge = relora.setup, relora.merge_and_reset

    def spy_setup(config, ctx):
        runs.append(real_setup(config, ctx))
        return runs[-1]

    def checked_merge(layers, optimizer=None, prune=0.99):
        model, ids = runs[0].model, _batch()["input_ids"]
        with torch.no_grad():
            before = model.eval()(input_ids=ids).logits
            out = real_merge(layers, optimizer, prune)
            gaps.append(float((model(input_ids=ids).logits - before).abs().max()))
        model.train()
        return out

    monkeypatch.setattr(relora, "setup", spy_setup)
    monkeypatch.setattr(relora, "merge_and_reset", checked_merge)
    config = ReLoRAConfig.from_params(
        {
            "model": tiny_folder(),
            **SMALL,
            "reset_every": 2,
            "lora_rank": 4,
            "warmup_steps": 1,
            "restart_warmup_steps": 1,
            "warm_start_steps": 0,
            "full_rank": "none",
        }
    )
    summary = run_relora(config, ctx)
    assert len(gaps) == 2 and max(gaps) < 1e-5  # resets after steps 2 and 4, logits unchanged
    run = json.loads((ctx.result_dir / "run.json").read_text())
    assert [r["step"] for r in run["resets"]] == [2, 4]
    assert all(r["kept_fraction"] == pytest.approx(0.01, abs=0.01) for r in run["resets"])
    assert len(run["losses"]) == 6 and summary["after"]["heldout_ppl"] > 0
    assert (ctx.result_dir / "model" / "model.safetensors").is_file()
    _check_rankevents_of(ctx, steps=[1, 2, 3, 4, 5, 6])
    # The saved model is a plain causal LM (no low-rank wrappers); three rank-4 stages sum to an
    # update of rank above 4: ReLoRA's high-rank training through low-rank updates.
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(ctx.result_dir / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_folder())
    assert [n for n, _ in trained.named_parameters()] == [n for n, _ in base.named_parameters()]
    q = "model.layers.0.self_attn.q_proj.weight"
    delta = (trained.get_parameter(q) - base.get_parameter(q)).double()
    assert int(torch.linalg.matrix_rank(delta, rtol=1e-6)) > 4


def test_relora_schedule_numbers():
    config = ReLoRAConfig(
        steps=20,
        warm_start_steps=4,
        warm_start_lr=1e-3,
        lr=2e-3,
        warmup_steps=2,
        reset_every=4,
        restart_warmup_steps=2,
        min_lr_ratio=0.1,
    )

    def cosine(t: int) -> float:  # the stage's cosine: t of 16 stage steps, after 2 of warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (t - 2) / 14))

    expected = [5e-4, 1e-3, 1e-3, 1e-3]  # warm start: warmup over 2 steps, then constant
    expected += [1e-3, 2e-3, 2e-3 * cosine(3), 2e-3 * cosine(4)]  # stage 1: a fresh warmup
    for reset in (4, 8, 12):  # stage steps after each reset: re-warm 2 steps, cosine goes on
        peak = cosine(reset + 2)
        expected += [
            2e-3 * peak / 2,
            2e-3 * peak,
            2e-3 * cosine(reset + 3),
            2e-3 * cosine(reset + 4),
        ]
    got = [relora_lr(step, config) for step in range(1, 21)]
    np.testing.assert_allclose([lr for lr, _ in got], expected, rtol=1e-12)
    assert [phase for _, phase in got] == ["warm-start"] * 4 + ["relora"] * 16
    assert expected[-1] == pytest.approx(2e-3 * 0.1)  # the cosine ends at min_lr_ratio
    defaults = ReLoRAConfig()  # a quarter of the run at half the ReLoRA rate (the paper's ratio)
    assert (defaults.warm_start(), defaults.warm_lr()) == (10, 2e-4)
    assert defaults.full_rank == "all-other"
    assert ReLoRAConfig(steps=4).warm_start() == 1 and ReLoRAConfig(steps=3).warm_start() == 0


NORMS = ("input_layernorm", "post_attention_layernorm", "model.norm")
EMBEDDINGS = ("embed_tokens", "lm_head")


@pytest.mark.parametrize(
    ("full_rank", "trained"),
    [
        ("none", ()),
        ("norms", NORMS),
        ("norms+embeddings", NORMS + EMBEDDINGS),
        ("all-other", NORMS + EMBEDDINGS),
    ],
)
def test_relora_warm_start_is_dense_then_low_rank(
    ctx, tiny_folder, monkeypatch, full_rank, trained
):
    from transformers import AutoModelForCausalLM

    import engine.training.relora as relora

    switch = {}
    real_set_phase = relora.set_phase

    def spy(layers, full, warm):
        if not warm:  # the end of the warm start: keep the target weights as they are now
            switch.update(
                {n: layer.base.weight.detach().double().clone() for n, layer in layers.items()}
            )
        return real_set_phase(layers, full, warm)

    monkeypatch.setattr(relora, "set_phase", spy)
    rank = 2
    config = ReLoRAConfig.from_params(
        {
            "model": tiny_folder(),
            **SMALL,
            "reset_every": 2,
            "lora_rank": rank,
            "warmup_steps": 1,
            "restart_warmup_steps": 1,
            "warm_start_steps": 2,
            "full_rank": full_rank,
        }
    )
    relora.run_relora(config, ctx)
    base = AutoModelForCausalLM.from_pretrained(tiny_folder())
    trained_model = AutoModelForCausalLM.from_pretrained(ctx.result_dir / "model")
    assert len(switch) == 14
    for name, at_switch in switch.items():
        before = base.get_submodule(name).weight.detach().double()
        after = trained_model.get_submodule(name).weight.detach().double()
        warm = at_switch - before  # two dense AdamW steps: every entry moves, (near) full rank
        assert float((warm != 0).double().mean()) > 0.99
        # (Adam's first steps are near sign(G), whose rows can repeat: 31 of 32 happens)
        assert int(torch.linalg.matrix_rank(warm, rtol=1e-5)) >= 0.9 * min(warm.shape)
        # ReLoRA: 4 stage steps, a merge after stage step 2 and one at the end: 2 rank-2 stages
        stages = int(torch.linalg.matrix_rank(after - at_switch, rtol=1e-5))
        assert 0 < stages <= 2 * rank
    changed = {
        n
        for n, p in trained_model.named_parameters()
        if n.rsplit(".", 2)[-2] not in TARGETS and not torch.equal(p, base.get_parameter(n))
    }
    expected = {
        n
        for n, _ in base.named_parameters()
        if n.rsplit(".", 2)[-2] not in TARGETS and any(t in n for t in trained)
    }
    assert changed == expected
    run = json.loads((ctx.result_dir / "run.json").read_text())
    assert [r["step"] for r in run["resets"]] == [4]
    assert [r["phase"] for r in run["learning_rates"]] == ["warm-start"] * 2 + ["relora"] * 4
    assert run["warm_start"] == {"steps": 2, "lr": SMALL["lr"] / 2}
    assert run["full_rank"]["parameters"] == sorted(expected)


def _check_rankevents_of(ctx, steps: list[int]) -> pd.DataFrame:
    events = events_of(ctx)
    for name in ("rank/effective", "rank/stable"):
        assert [e["step"] for e in events if e.get("name") == name] == steps
    table = pd.read_parquet(ctx.result_dir / RANK_TABLE)
    assert tuple(table.columns) == COLUMNS
    assert sorted(table["step"].unique().tolist()) == steps
    assert set(table["kind"]) == set(TARGETS) and set(table["layer"]) == {0, 1}
    assert (table["norm"] > 0).all()
    return table


def test_rank1_updates_have_rank_one_and_accumulate(ctx, tiny_folder):
    from transformers import AutoModelForCausalLM

    from engine.training.rank1 import run_rank1

    folder = tiny_folder()
    run_rank1(Rank1Config.from_params({"model": folder, **SMALL, "steps": 1}), ctx)
    trained = AutoModelForCausalLM.from_pretrained(ctx.result_dir / "model")
    base = AutoModelForCausalLM.from_pretrained(folder)
    for name, module in base.named_modules():
        if name.rsplit(".", 1)[-1] in TARGETS:
            delta = trained.get_submodule(name).weight - module.weight  # one step's update
            assert float(delta.abs().max()) > 0
            assert int(torch.linalg.matrix_rank(delta.double(), rtol=1e-6)) == 1


def test_rank1_accumulated_rank_grows(ctx, tiny_folder):
    from engine.training.rank1 import run_rank1

    run_rank1(Rank1Config.from_params({"model": tiny_folder(), **SMALL}), ctx)
    table = _check_rankevents_of(ctx, steps=[1, 2, 3, 4, 5, 6])
    # Step k's accumulated update is a sum of k rank-1 updates: effective rank ≤ k, growing.
    means = table.groupby("step")["effective_rank"].mean()
    assert means.loc[1] == pytest.approx(1.0, abs=1e-3)
    assert all(table[table["step"] == s]["effective_rank"].max() <= s + 1e-3 for s in means.index)
    assert np.all(np.diff(means.to_numpy()) > 0)
    run = json.loads((ctx.result_dir / "run.json").read_text())
    assert run["merges"] == 6 and run["kind"] == "rank1"


def test_rank1_merge_every_two(ctx, tiny_folder):
    from engine.training.rank1 import run_rank1

    config = Rank1Config.from_params(
        {
            "model": tiny_folder(),
            **SMALL,
            "steps": 4,
            "merge_every": 2,
            "rank_every": 2,
            "method": "random-projection",
        }
    )
    run_rank1(config, ctx)
    run = json.loads((ctx.result_dir / "run.json").read_text())
    assert run["merges"] == 2
    table = pd.read_parquet(ctx.result_dir / RANK_TABLE)
    assert table[table["step"] == 2]["effective_rank"].max() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (ReLoRAConfig, {"reset_every": 0}, "reset_every must be ≥ 1"),
        (
            ReLoRAConfig,
            {"optimizer_reset_prune": 1.5},
            r"optimizer_reset_prune must be in \[0, 1\]",
        ),
        (ReLoRAConfig, {"reset_every": 4, "restart_warmup_steps": 4}, "must be shorter"),
        (ReLoRAConfig, {"min_lr_ratio": -0.1}, "min_lr_ratio"),
        (ReLoRAConfig, {"target_modules": " , "}, "target_modules is empty"),
        (ReLoRAConfig, {"lora": False}, "always train low-rank"),
        (ReLoRAConfig, {"steps": 4, "warm_start_steps": 4}, "must be ≥ 0 and leave ReLoRA"),
        (ReLoRAConfig, {"warm_start_lr": 0}, "warm_start_lr must be > 0"),
        (ReLoRAConfig, {"full_rank": "lm_head"}, "full_rank must be one of"),
        (Rank1Config, {"lora_rank": 4}, "lora_rank 1"),
        (Rank1Config, {"merge_every": 0}, "merge_every must be ≥ 1"),
        (Rank1Config, {"rank_every": 0}, "rank_every must be ≥ 1"),
        (Rank1Config, {"reset_every": 3}, "unknown key reset_every"),
    ],
)
def test_config_errors(cls, params, message):
    with pytest.raises(SubnetScopeError, match=message):
        cls.from_params(params)


def test_targets_matching_nothing_are_one_error(ctx, tiny_folder):
    from engine.training.relora import run_relora

    config = ReLoRAConfig.from_params({"model": tiny_folder(), **SMALL, "target_modules": "c_fc"})
    with pytest.raises(SubnetScopeError, match="match no nn.Linear"):
        run_relora(config, ctx)


def test_paper_defaults():
    config = ReLoRAConfig()
    assert config.optimizer_reset_prune == 0.99 and config.min_lr_ratio == 0.1
    assert config.lr == 2 * 2e-4  # 2× the LoRA run's rate, as the paper doubles full-rank lr
    assert "2000" in ReLoRAConfig.help("reset_every")
    assert "50" in ReLoRAConfig.help("restart_warmup_steps")
    assert Rank1Config().merge_every == 1
