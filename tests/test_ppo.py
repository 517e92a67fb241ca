"""PPO as in seed 000 and training precision (issue 16 fixes 4 and 5): two-label classifier
rewards read as a logit difference, a value head on the policy's own trunk whose loss reaches
the trunk, bf16 weights kept and saved as bf16, τ = 1e-6 tracking with update ranks."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from engine.errors import SubnetScopeError
from tests.job_support import events_of
from tests.tiny import char_tokenizer, tiny_config, tiny_model

LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
RL = {
    "steps": 2,
    "batch_size": 2,
    "checkpoint_every": 1,
    "max_length": 16,
    "lr": 1e-3,
    "max_completion_length": 6,
    "limit": 4,
}


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory) -> str:
    """A two-label sequence classifier built from a tiny config (distilbert-imdb's shape)."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(1)
    config = tiny_config("llama")
    config.num_labels, config.id2label = 2, dict(LABELS)
    config.label2id = {v: k for k, v in LABELS.items()}
    model = AutoModelForSequenceClassification.from_config(config)
    folder = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return str(folder)


def _dtypes(folder) -> set[torch.dtype]:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)


def test_two_label_classifier_reward_is_the_chosen_logit_difference(classifier_folder) -> None:
    from transformers import AutoModelForSequenceClassification

    from engine.training.rewards import ClassifierReward

    texts = ["a fine film.", "dull, slow and long"]
    model = AutoModelForSequenceClassification.from_pretrained(classifier_folder).eval()
    logits = []
    for text in texts:  # one at a time: no padding in the independent computation
        ids = torch.tensor([char_tokenizer()(text)["input_ids"]])
        with torch.no_grad():
            logits.append(model(input_ids=ids).logits[0])
    logits = torch.stack(logits)
    for spec, expected in (
        ("1-0", logits[:, 1] - logits[:, 0]),
        ("POSITIVE-NEGATIVE", logits[:, 1] - logits[:, 0]),
        ("auto", logits[:, 1] - logits[:, 0]),  # seed 000's logit(positive) − logit(negative)
        ("negative-positive", logits[:, 0] - logits[:, 1]),
        ("0", logits[:, 0]),
    ):
        got = ClassifierReward(classifier_folder, spec).batch(["q", "q"], texts)
        assert got == pytest.approx(expected.tolist(), abs=1e-5), spec
    with pytest.raises(SubnetScopeError, match="names no label.*0=NEGATIVE, 1=POSITIVE"):
        ClassifierReward(classifier_folder, "2-0")


def test_reward_labels_with_dashes_in_names_and_many_labels() -> None:
    from types import SimpleNamespace

    from engine.training.rewards import parse_reward_labels

    config = SimpleNamespace(num_labels=3, id2label={0: "non-toxic", 1: "toxic", 2: "other"})
    assert parse_reward_labels("toxic-non-toxic", config) == (1, 0)
    assert parse_reward_labels("non-toxic-toxic", config) == (0, 1)
    assert parse_reward_labels("non-toxic", config) == (0, None)
    with pytest.raises(SubnetScopeError, match="has 3 labels"):
        parse_reward_labels("auto", config)


def test_non_toxicity_is_the_scorers_logit_difference() -> None:
    from engine.attribution.toxicity import available_scorers, get_scorer
    from engine.training.rewards import named_reward
    from tests.optional import need

    need("alt-profanity-check", "profanity-check" in available_scorers(), "not installed")
    texts = ["What a lovely day.", "you are a stupid idiot", ""]
    p = get_scorer("profanity-check").score(texts)
    expected = [
        torch.log(torch.tensor(1 - q, dtype=torch.float64) / q).item()
        for q in (min(max(q, 1e-6), 1 - 1e-6) for q in p)
    ]
    reward = named_reward("non_toxicity:profanity-check")
    assert reward.batch(["q"] * 3, texts) == pytest.approx(expected, rel=1e-6)
    assert reward("q", texts[0]) > reward("q", texts[1])
    with pytest.raises(SubnetScopeError, match="unknown or unavailable toxicity scorer 'nope'"):
        named_reward("non_toxicity:nope")


def _value_loss(shared: bool):
    """One value-loss-only backward through trl.experimental.ppo's own wrapper and forward."""
    from trl.experimental.ppo.ppo_trainer import PolicyAndValueWrapper, forward

    from engine.training.runs import ScalarHeadModel

    policy = tiny_model("llama").model.train().requires_grad_(True)
    model = PolicyAndValueWrapper(policy, ScalarHeadModel(policy, shared=shared))
    ids = torch.tensor([char_tokenizer()("hello there")["input_ids"]])
    output, values = forward(model, ids, pad_token_id=0)  # values: (batch, seq, 1)
    (values.float() ** 2).mean().backward()
    grads = {n: p.grad for n, p in policy.named_parameters()}
    return grads, model, values.detach(), output.hidden_states[-1].detach()


def test_shared_value_head_loss_reaches_the_policy_trunk() -> None:
    grads, model, values, hidden = _value_loss(shared=True)
    trunk = {n: g for n, g in grads.items() if n.startswith("model.layers.")}
    assert trunk and all(g is not None and g.abs().sum() > 0 for g in trunk.values())
    assert grads["lm_head.weight"] is None  # the value loss does not touch the LM head
    # The value is the head on the policy's own last hidden state (the policy forward's output).
    with torch.no_grad():
        assert values == pytest.approx(model.value_model.score(hidden), abs=1e-6)
    assert model.value_model.score.summary.weight.grad is not None


def test_separate_value_model_never_reaches_the_policy() -> None:
    grads, model, _, _ = _value_loss(shared=False)
    assert all(g is None for g in grads.values())
    copy = model.value_model.backbone.layers[0].mlp.down_proj.weight
    assert copy.grad is not None and copy.grad.abs().sum() > 0


def test_precision_is_validated_and_value_model_needs_separate() -> None:
    from engine.training.config import PPORunConfig, SFTRunConfig

    with pytest.raises(SubnetScopeError, match="precision must be one of fp32, bf16"):
        SFTRunConfig(precision="fp16")
    with pytest.raises(SubnetScopeError, match="value_head: separate"):
        PPORunConfig(value_model="some/model")
    assert PPORunConfig().tolerance == 1e-6 and PPORunConfig().value_head == "shared"


def test_ppo_bf16_shared_head_classifier_reward(ctx, tiny_folder, classifier_folder) -> None:
    """Seed 000's set-up on tiny models: bf16 policy, shared value head, two-label classifier
    reward (logit[1] − logit[0]), τ = 1e-6 tracking with update ranks."""
    from engine.sparsity import DiffConfig, diff
    from engine.training.jobs import train_ppo

    params = {"model": tiny_folder(), **RL, "reward": classifier_folder, "precision": "bf16"}
    summary = train_ppo(params, ctx)
    result = ctx.result_dir
    assert _dtypes(result / "base") == {torch.bfloat16}
    assert _dtypes(result / "checkpoint-2") == {torch.bfloat16}
    run = json.loads((result / "run.json").read_text())
    assert run["precision"] == "bf16" and run["config"]["tolerance"] == 1e-6
    assert run["reward"] == f"{classifier_folder}: logit[POSITIVE − NEGATIVE]"
    events = events_of(ctx)
    changed = [e for e in events if e.get("name") == "changed_fraction"]
    assert [float(e["tolerance"]) for e in changed] == [1e-6, 1e-6]
    # The logged fraction is the diff at τ = 1e-6 of the saved bf16 checkpoint.
    check = diff(result / "base", result / "checkpoint-2", DiffConfig(tolerances=(1e-6,)))
    criterion = check.summary["mask_criterion"]
    assert float(criterion) == 1e-6
    assert changed[-1]["value"] == pytest.approx(check.summary["changed"][criterion]["fraction"])
    assert 0 < summary["changed_fraction"] <= 1
    ranks = {e["name"]: e for e in events if str(e.get("name", "")).startswith("rank/")}
    assert {"rank/effective", "rank/stable", "rank/classical_ratio"} <= set(ranks)
    assert ranks["rank/effective"]["value"] >= 1
    import pandas as pd

    table = pd.read_parquet(result / "update_ranks.parquet")
    assert sorted(table["step"].unique()) == [1, 2] and (table["method"] == "svd").any()


def test_ppo_separate_value_head_still_runs(ctx, tiny_folder) -> None:
    from engine.training.jobs import train_ppo

    params = {
        "model": tiny_folder(),
        **RL,
        "reward": "length:3",
        "value_head": "separate",
        "ranks": False,
        "num_mini_batches": 2,
        "num_ppo_epochs": 2,
    }
    summary = train_ppo(params, ctx)
    assert summary["changed_fraction"] > 0
    assert not (ctx.result_dir / "update_ranks.parquet").exists()


@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_bf16_runs_keep_and_save_bf16_weights(ctx, tiny_folder, kind) -> None:
    from engine.training import jobs

    params = {"model": tiny_folder(), **RL, "precision": "bf16"}
    if kind == "grpo":
        params |= {"num_generations": 2, "reward": "length:3"}
    else:
        params = {k: v for k, v in params.items() if k != "max_completion_length"}
    getattr(jobs, f"train_{kind}")(params, ctx)
    config = json.loads((ctx.result_dir / "checkpoint-2" / "config.json").read_text())
    assert _dtypes(ctx.result_dir / "checkpoint-2") == {torch.bfloat16}
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"


def test_function_reward_model_scales_and_batches() -> None:
    from engine.training.rewards import FunctionRewardModel, ScorerReward

    class Lengths(ScorerReward):
        calls = 0

        def batch(self, prompts, completions):
            Lengths.calls += 1
            return [float(len(c)) for c in completions]

    tok = char_tokenizer()
    prompt = tok("Q?")["input_ids"]
    model = FunctionRewardModel(Lengths(), tok, [prompt], scale=0.02)  # seed 000's scale
    rows = torch.tensor(
        [prompt + tok("abcd")["input_ids"], prompt + tok("ab")["input_ids"] + [0, 0]]
    )
    out = model.backbone(input_ids=rows, attention_mask=(rows != 0).long())
    assert out.hidden_states[0][:, -1, 0].tolist() == pytest.approx([0.08, 0.04])
    assert Lengths.calls == 1  # one call for the whole batch


def test_grpo_takes_a_two_label_classifier_reward(ctx, tiny_folder, classifier_folder) -> None:
    from engine.training.jobs import train_grpo

    params = {
        "model": tiny_folder(),
        **RL,
        "num_generations": 2,
        "reward": classifier_folder,
        "reward_labels": "POSITIVE-NEGATIVE",
    }
    assert train_grpo(params, ctx)["changed_fraction"] > 0


def test_a_reward_that_is_no_classifier_is_one_sentence(tmp_path) -> None:
    from engine.training.rewards import reward_for

    with pytest.raises(SubnetScopeError, match="is not a named reward or a sequence-classif"):
        reward_for(str(tmp_path / "missing"))
