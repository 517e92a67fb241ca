"""SBD evaluation (engine/sbd/evaluate.py, catalog.py): held-out sums, the answer rule, the
trade-off arithmetic, the base model's score of a generation, and the `sbd.evaluate` job on a tiny
SBD fine-tune."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from engine.data.demo_tasks import demo_arithmetic_records
from engine.errors import SubnetScopeError
from engine.sbd.evaluate import (
    AR,
    SBD,
    answer_correct,
    arithmetic_examples,
    evaluate_run,
    evaluation_summary,
    generation_nll,
    operands,
    trade_off_table,
)
from tests.sbd_support import run_tiny_sbd, save_tiny_sbd
from tests.tiny import tiny_model


def test_held_out_sums_avoid_every_training_pair() -> None:
    training = demo_arithmetic_records()  # what demo-arithmetic trains on
    taken = {operands(r) for r in training}
    held = arithmetic_examples(300, seed=0, exclude=training)  # even the training seed
    pairs = [operands(r) for r in held]
    assert len(held) == 300 and len(set(pairs)) == 300 and not taken & set(pairs)
    assert held == arithmetic_examples(300, seed=0, exclude=training)
    assert held != arithmetic_examples(300, seed=1, exclude=training)
    assert held[0]["response"] == "{} + {} = {}.".format(*pairs[0], sum(pairs[0]))


def test_too_many_held_out_sums_is_one_error() -> None:
    with pytest.raises(SubnetScopeError, match="only 8100 two-digit sums"):
        arithmetic_examples(8101, seed=0)
    with pytest.raises(SubnetScopeError, match="≥ 1"):
        arithmetic_examples(0, seed=0)


@pytest.mark.parametrize(
    ("text", "right"),
    [
        ("17 + 25 = 42.", True),
        ("17 + 25 = 42", True),
        ("=42 and then 43", True),
        (" 17 + 25 =  42.0", True),  # the first integer after "=" is 42
        ("17 + 25 = 41.", False),
        ("17 + 25 = 420.", False),
        ("42", False),  # no "="
        ("17 + 25 =", False),  # nothing after it
        ("17 + 25 = 42 = 43", True),  # only the first "=" counts
        ("17 = 3 + 25 = 42", False),
    ],
)
def test_answer_rule(text: str, right: bool) -> None:
    record = {"instruction": "What is 17 + 25?", "response": "17 + 25 = 42."}
    assert answer_correct(record, text) is right


def test_answer_rule_refuses_a_record_without_a_sum() -> None:
    with pytest.raises(SubnetScopeError, match="not a demo-arithmetic example"):
        answer_correct({"instruction": "Name a colour.", "response": "red"}, "= 1")


def _sample(example, method, threshold, forwards, tokens, correct, agrees, nll=1.0) -> dict:
    return {
        "example": example,
        "method": method,
        "threshold": threshold,
        "block_size": 1 if method == AR else 8,
        "correct": correct,
        "agrees_with_ar": agrees,
        "forwards": forwards,
        "tokens": tokens,
        "seconds": 0.5 * forwards,
        "base_nll": nll,
    }


def test_trade_off_table_arithmetic() -> None:
    samples = pd.DataFrame(
        [
            _sample(0, AR, None, 10, 10, True, True, nll=1.0),
            _sample(1, AR, None, 6, 6, False, True, nll=2.0),
            _sample(0, SBD, 0.5, 4, 10, True, True, nll=1.0),
            _sample(1, SBD, 0.5, 4, 6, True, False, nll=float("nan")),  # not scorable
        ]
    )
    table = trade_off_table(samples)
    ar, sbd = table.iloc[0], table.iloc[1]
    assert ar["method"] == AR and math.isnan(ar["threshold"]) and sbd["threshold"] == 0.5
    assert ar["forwards_per_token"] == 1.0 and ar["speedup"] == 1.0 and ar["accuracy"] == 0.5
    assert sbd["forwards_per_token"] == pytest.approx(8 / 16)
    assert sbd["forwards_per_answer"] == 4.0 and sbd["speedup"] == pytest.approx(16 / 8)
    assert sbd["accuracy"] == 1.0 and sbd["agreement"] == 0.5
    assert ar["base_ppl"] == pytest.approx(math.exp((10 * 1.0 + 6 * 2.0) / 16))
    assert sbd["base_ppl"] == pytest.approx(math.e) and sbd["base_scored"] == 1
    assert sbd["seconds_per_answer"] == 2.0
    summary = evaluation_summary(table)
    assert summary["best_threshold"] == 0.5 and summary["meets_target"]
    assert summary["message"].startswith("SBD k = 8, γ = 0.5: 2.00× fewer forward passes")


def test_summary_says_when_no_threshold_keeps_the_accuracy() -> None:
    samples = pd.DataFrame(
        [
            _sample(0, AR, None, 10, 10, True, True),
            _sample(0, SBD, 1.0, 2, 10, False, False),
        ]
    )
    summary = evaluation_summary(trade_off_table(samples))
    assert summary["best_threshold"] is None and not summary["meets_target"]
    assert summary["message"].startswith("no threshold kept the accuracy within 2 points")


def test_generation_nll_scores_the_generated_tokens_only(tiny_models) -> None:
    base = tiny_models["llama"]
    prompt, new = "What is 1 + 2?\n", [5, 9, 1]
    prompt_ids = base.tokenizer(prompt)["input_ids"]
    ids = torch.tensor([prompt_ids + new])
    with torch.inference_mode():
        logp = torch.log_softmax(base.model(input_ids=ids).logits[0].float(), dim=-1)
    expected = -sum(logp[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(new))
    assert generation_nll(base, prompt, new) == pytest.approx(expected, rel=1e-5)
    vocab = base.model.get_input_embeddings().num_embeddings
    assert generation_nll(base, prompt, [5, vocab]) is None  # the mask token of a tuned copy


@pytest.fixture(scope="module")
def tiny_sbd():
    """A tiny Llama with the SBD mask token added (untrained: the decoders run, nothing is
    learned), and the plain tiny Llama as its base."""
    from engine.sbd.train import add_mask_token

    loaded = tiny_model("llama", seed=3)
    # A copy: the tiny models share one tokenizer, which must keep its vocabulary.
    loaded = dataclasses.replace(loaded, tokenizer=copy.deepcopy(loaded.tokenizer))
    add_mask_token(loaded.model, loaded.tokenizer)
    return loaded, tiny_model("llama", seed=3)


def test_evaluate_run_on_a_tiny_model(tiny_sbd) -> None:
    loaded, base = tiny_sbd
    examples = arithmetic_examples(2, seed=5)
    seen = []
    table, samples = evaluate_run(
        loaded,
        base,
        examples,
        "basic",
        [0.0, 100.0],
        block_size=4,
        max_new_tokens=6,
        progress=lambda f, m: seen.append(f),
    )
    assert list(table["method"]) == [AR, SBD, SBD] and list(table["threshold"][1:]) == [0, 100]
    assert seen[-1] == 1.0 and len(seen) == 6
    assert len(samples) == 6 and set(samples["example"]) == {0, 1}
    ar = samples[samples["method"] == AR]
    assert (ar["forwards"] == ar["tokens"]).all() and table["forwards_per_token"].iloc[0] == 1.0
    wide = samples[samples["threshold"] == 100.0]
    # γ = 100 nats reveals every slot of a block at once: one pass per block of 4.
    assert (wide["forwards"] == [math.ceil(t / 4) for t in wide["tokens"]]).all()
    for row in samples.itertuples():
        assert len(row.passes) == len(row.pieces) == row.tokens - row.stopped_at_eos
        assert list(row.passes) == sorted(row.passes) or row.method == SBD
        assert 1 <= max(row.passes, default=1) <= row.forwards
    assert table["base_scored"].iloc[0] == 2 and table["base_ppl"].iloc[0] > 1


def test_evaluate_run_refuses_plain_texts(tiny_sbd) -> None:
    loaded, base = tiny_sbd
    with pytest.raises(SubnetScopeError, match="plain texts have no prompt"):
        evaluate_run(loaded, base, [{"text": "just prose"}], "basic", [0.1])


def test_evaluate_job_on_a_tiny_fine_tune(job_cache, tiny_folder, monkeypatch) -> None:
    from engine.jobs import get_job
    from engine.sbd.catalog import evaluations, find_run, run_label, sbd_runs
    from engine.sbd.config import EVAL_FILE, EVAL_SUMMARY, SAMPLES_FILE
    from tests.generator_support import run_job
    from tests.job_support import hold_local_jobs

    hold_local_jobs(monkeypatch)
    with pytest.raises(SubnetScopeError, match="demo's SBD fine-tune is not built"):
        find_run("demo")
    run = run_tiny_sbd(tiny_folder("llama"))
    [found] = sbd_runs()
    assert found.view.id == run and find_run(run[:22]).view.id == run
    assert run_label(found).endswith(f"full SBD fine-tune, 3 steps, k 2-16 · {run}")
    params = {"run": run, "eval_examples": 3, "thresholds": [0.2, 50], "max_new_tokens": 8}
    evaluated = run_job("sbd.evaluate", params)
    result = get_job(evaluated).path / "result"
    table = pd.read_parquet(result / EVAL_FILE)
    samples = pd.read_parquet(result / SAMPLES_FILE)
    summary = json.loads((result / EVAL_SUMMARY).read_text())
    assert list(table["threshold"].fillna(-1)) == [-1, 0.2, 50] and len(samples) == 9
    assert summary["run"] == run and len(summary["rows"]) == 3 and summary["message"]
    # The training job's own evaluation first, then the evaluate job's.
    assert [r.view.id for r in evaluations()] == [run, evaluated]
    assert run_label(evaluations()[1]).startswith(f"evaluation of {run} at γ 0.2, 50 · ")
    with pytest.raises(SubnetScopeError, match="is a sbd.evaluate job, not an sbd.train run"):
        find_run(evaluated)


def test_benchmark_quick_mode_counts_both_sides(tmp_path, monkeypatch) -> None:
    from benchmarks.sbd_decoding import MODEL_ENV, PROMPTS_ENV, sbd_decoding
    from engine.sbd.config import PAPER_THRESHOLDS

    save_tiny_sbd(tmp_path)
    monkeypatch.setenv(MODEL_ENV, str(tmp_path))
    monkeypatch.setenv(PROMPTS_ENV, "2")
    results = sbd_decoding(1)
    assert len(results) == 2 * len(PAPER_THRESHOLDS)
    forwards, seconds = results[0], results[1]
    assert forwards.unit == "passes" and forwards.details["prompts"] == 2
    assert forwards.ratio == pytest.approx(forwards.value / forwards.baseline_value)
    ar = forwards.details["autoregressive"]
    assert ar["tokens_per_forward"] == 1.0 and seconds.baseline_value > 0


def test_a_run_on_plain_texts_skips_the_decoding_evaluation(ctx, tiny_sbd) -> None:
    from engine.data.formats import Example
    from engine.sbd.config import SBDConfig
    from engine.sbd.evaluate import evaluate_finished_run

    loaded, _ = tiny_sbd
    config = SBDConfig(dataset="demo-general")
    assert evaluate_finished_run(config, ctx, loaded, [Example(text="prose")]) is None
    assert not any(ctx.result_dir.iterdir())


def test_evaluate_job_on_other_instruction_data_reads_the_runs_held_out_file(
    job_cache, tiny_folder, tmp_path, monkeypatch
) -> None:
    from engine.jobs import get_job
    from engine.sbd.config import EVAL_FILE, HELDOUT_FILE, SAMPLES_FILE
    from tests.generator_support import run_job
    from tests.job_support import hold_local_jobs

    hold_local_jobs(monkeypatch)
    records = tmp_path / "words.jsonl"
    words = ["red", "blue", "green", "black", "white", "pink", "grey", "gold", "teal", "plum"]
    records.write_text(
        "".join(json.dumps({"instruction": f"Say {w}", "response": w}) + "\n" for w in words)
    )
    run = run_tiny_sbd(tiny_folder("llama"), dataset=str(records), eval_texts=4)
    saved = json.loads((get_job(run).path / "result" / HELDOUT_FILE).read_text())
    assert len(saved) == 3 and all(r["instruction"].startswith("Say ") for r in saved)
    evaluated = run_job("sbd.evaluate", {"run": run, "eval_examples": 2, "thresholds": [1.0]})
    result = get_job(evaluated).path / "result"
    samples = pd.read_parquet(result / SAMPLES_FILE)
    assert list(samples["instruction"].unique()) == [r["instruction"] for r in saved[:2]]
    assert set(samples["expected"]) <= set(words)  # the reference response, exactly
    assert len(pd.read_parquet(result / EVAL_FILE)) == 2
