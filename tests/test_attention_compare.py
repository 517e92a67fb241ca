"""Base vs tuned attention on tiny models: per-head deltas and ranks, local vs global summary, a
checkpoint without a tokenizer read on the base's ids, an adapter applied per call, the choices."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.attention.capture import STATS, head_stats
from engine.attention.compare import (
    TunedChoice,
    change_by_kind,
    choice_of,
    compare_heads,
    reference_stats,
    tuned_choices,
    tuned_stats,
)
from engine.errors import SubnetScopeError
from engine.lora import apply_lora, load_adapter
from tests.job_support import hold_local_jobs
from tests.lora_support import make_adapter
from tests.passport_support import finished_job
from tests.tiny import tiny_model

TEXTS = ["The cat sat on the mat and looked at the dog.", "def add(a, b):\n    return a + b\n"]
KW = {"window": 4, "max_tokens": 48}


def test_compare_heads_gives_deltas_and_ranks(tiny_models) -> None:
    base = head_stats(tiny_models["gemma3n"], TEXTS, **KW)
    tuned = head_stats(tiny_model("gemma3n", seed=1), TEXTS, **KW)
    frame = compare_heads(base, tuned, "distance")
    assert len(frame) == len(base.frame) == 4
    for stat in STATS:
        delta = frame[f"{stat}_tuned"] - frame[f"{stat}_base"]
        assert frame[f"{stat}_delta"].to_numpy() == pytest.approx(delta.to_numpy())
    top = frame.loc[frame["rank"] == 1].iloc[0]
    assert top["change"] == pytest.approx(frame["distance_delta"].abs().max())
    assert sorted(frame["rank"]) == [1, 2, 3, 4]
    kinds = change_by_kind(frame, "distance").set_index("kind")
    assert kinds.loc["local", "heads"] == kinds.loc["global", "heads"] == 2
    assert kinds["in_top"].sum() == kinds["top"].iloc[0] == 1
    assert kinds.loc["global", "max_abs_delta"] == pytest.approx(
        frame.loc[frame["kind"] == "global", "distance_delta"].abs().max()
    )
    same = compare_heads(base, base)
    assert (same[[f"{s}_delta" for s in STATS]] == 0).all().all()


def test_compare_refuses_what_does_not_line_up(tiny_models) -> None:
    base = head_stats(tiny_models["llama"], TEXTS, **KW)
    with pytest.raises(SubnetScopeError, match="unknown statistic"):
        compare_heads(base, base, "perplexity")
    other_window = head_stats(tiny_models["llama"], TEXTS, window=8, max_tokens=48)
    with pytest.raises(SubnetScopeError, match="different windows"):
        compare_heads(base, other_window)
    fewer = type(base)(base.frame.iloc[:2], base.window, base.texts, base.tokens, 0)
    with pytest.raises(SubnetScopeError, match="different layers or heads"):
        compare_heads(base, fewer)


def test_a_checkpoint_without_tokenizer_reads_the_base_token_ids(tiny_models, tmp_path) -> None:
    tuned_model = tiny_model("llama", seed=1)
    tuned_model.model.save_pretrained(tmp_path / "checkpoint-10")  # no tokenizer, as runs save
    choice = choice_of(tmp_path / "checkpoint-10")
    assert choice.kind == "model" and choice.base is None
    got = tuned_stats(tiny_models["llama"], choice, TEXTS, **KW)
    want = head_stats(tuned_model, TEXTS, **KW)
    pd.testing.assert_frame_equal(got.frame, want.frame, rtol=1e-5)
    assert got.tokens == want.tokens
    reference = reference_stats(tiny_models["llama"], choice, TEXTS, **KW)
    pd.testing.assert_frame_equal(
        reference.frame, head_stats(tiny_models["llama"], TEXTS, **KW).frame
    )


def test_a_run_checkpoint_is_compared_with_the_run_saved_base(tiny_models, tmp_path) -> None:
    """A bf16 run saves its base in bf16: that copy, not the fp32 base model, is the reference."""
    import torch

    saved = tiny_model("llama")
    saved.model.to(torch.bfloat16).save_pretrained(tmp_path / "base")
    tiny_model("llama", seed=1).model.to(torch.bfloat16).save_pretrained(tmp_path / "checkpoint-4")
    choice = choice_of(tmp_path / "checkpoint-4")
    assert choice.base == tmp_path / "base"
    base = tiny_models["llama"]  # fp32: the saved base reads in it too (bf16-rounded weights)
    reference = reference_stats(base, choice, TEXTS, **KW)
    rounded = tiny_model("llama")
    rounded.model.to(torch.bfloat16).float()
    pd.testing.assert_frame_equal(reference.frame, head_stats(rounded, TEXTS, **KW).frame)
    assert not reference.frame["entropy"].equals(head_stats(base, TEXTS, **KW).frame["entropy"])


def test_an_adapter_applies_per_call_on_the_base(tiny_models, tmp_path) -> None:
    folder = make_adapter(tmp_path / "adapter", targets=("q_proj", "k_proj"))
    base = tiny_models["llama"]
    choice = choice_of(folder)
    assert choice.kind == "adapter"
    got = tuned_stats(base, choice, TEXTS, **KW)
    with apply_lora(base, load_adapter(folder).factors):
        want = head_stats(base, TEXTS, **KW)
    pd.testing.assert_frame_equal(got.frame, want.frame)
    plain = head_stats(base, TEXTS, **KW)  # the adapter is gone after the call
    assert not got.frame["entropy"].equals(plain.frame["entropy"])
    with pytest.raises(SubnetScopeError, match="neither a PEFT adapter"):
        choice_of(tmp_path)


def test_tuned_choices_list_run_checkpoints_and_adapters(job_cache, monkeypatch) -> None:
    hold_local_jobs(monkeypatch)

    def checkpoints(result, view) -> None:
        for step in (20, 10):
            (result / f"checkpoint-{step}").mkdir()
            (result / f"checkpoint-{step}" / "config.json").write_text("{}")
        (result / "base").mkdir()  # the run's saved base: the checkpoints' reference
        (result / "base" / "config.json").write_text("{}")

    finished_job("train.sft", {"model": "demo"}, checkpoints)
    finished_job("train.grpo", {"model": "/elsewhere"}, checkpoints)
    choices = tuned_choices()
    models = [c for c in choices if c.kind == "model"]
    assert [c.path.name for c in models] == ["checkpoint-10", "checkpoint-20"] * 2
    assert models[0].label.startswith("SFT ") and models[0].label.endswith("step 10")
    assert all(isinstance(c, TunedChoice) for c in choices)
    assert all(c.base == c.path.parent / "base" for c in models)
    assert [c.source for c in tuned_choices("demo") if c.kind == "model"] == ["demo", "demo"]
