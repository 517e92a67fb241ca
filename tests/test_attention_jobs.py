"""The attention area's job kinds on tiny models: the localize sweep (NLL against a direct
computation, ranks, the layer choice), the context-length capture, their configs, the demo parts."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from engine.attention.capture import head_stats
from engine.attention.config import ContextConfig, SweepConfig
from engine.attention.context import context_stats, long_texts, run_context
from engine.attention.jobs import context_job, sweep_job
from engine.attention.layout import attention_layout
from engine.attention.sweep import SWEEP_COLUMNS, chosen_layers, localize_sweep, run_sweep
from engine.errors import SubnetScopeError
from tests.job_support import events_of

TEXT = "The quick brown fox jumps over the lazy dog while the cat sleeps. " * 4


def _ids(loaded, rows: int = 2, length: int = 40) -> torch.Tensor:
    ids = loaded.tokenizer(TEXT, return_tensors="pt")["input_ids"][0]
    return torch.stack([ids[i * 7 : i * 7 + length] for i in range(rows)])  # (rows, length)


def _direct_nll(loaded, ids: torch.Tensor) -> float:
    with torch.inference_mode():
        logits = loaded.model(input_ids=ids).logits[:, :-1].float()  # (rows, T-1, vocab)
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)))


def test_configs_check_their_options() -> None:
    assert SweepConfig(windows=[64, 32, 32]).windows == (32, 64)
    assert SweepConfig().to_params()["windows"] == [32]  # a list, as spec.json holds it
    with pytest.raises(SubnetScopeError, match="longer than the window"):
        SweepConfig(max_tokens=32, windows=(32,))
    with pytest.raises(SubnetScopeError, match="unknown key"):
        SweepConfig.from_params({"window": 8})
    with pytest.raises(SubnetScopeError, match="sinks must be ≥ 0"):
        SweepConfig(sinks=-1)
    with pytest.raises(SubnetScopeError, match="unknown dtype"):
        SweepConfig(dtype="fp8")
    assert ContextConfig(lengths=(512, 128)).lengths == (128, 512)
    with pytest.raises(SubnetScopeError, match="≥ 2 tokens"):
        ContextConfig(lengths=(1,))


def test_sweep_nll_matches_a_direct_computation_and_ranks_by_loss(tiny_models) -> None:
    loaded = tiny_models["llama"]
    ids = _ids(loaded)
    baseline, frame = localize_sweep(loaded, ids, [0, 1], (3, 40))
    assert list(frame.columns) == SWEEP_COLUMNS
    assert baseline["nll"] == pytest.approx(_direct_nll(loaded, ids), rel=1e-5)
    assert baseline["tokens"] == 2 * 39
    assert baseline["perplexity"] == pytest.approx(math.exp(baseline["nll"]))
    # A window as long as the text masks nothing: exactly the baseline.
    wide = frame[frame["window"] == 40]
    assert (wide["delta_nll"].abs() < 1e-6).all()
    narrow = frame[frame["window"] == 3].set_index("layer")
    assert (narrow["delta_nll"].abs() > 1e-6).all()
    assert narrow["delta_nll"].to_numpy() == pytest.approx(
        narrow["nll"].to_numpy() - baseline["nll"]
    )
    cheapest = narrow["delta_nll"].idxmin()
    assert narrow.loc[cheapest, "rank"] == 1 and sorted(narrow["rank"]) == [1, 2]
    # Keeping the first token visible is another ablation: another loss, the same baseline.
    with_sink, sunk = localize_sweep(loaded, ids, [0, 1], (3,), sinks=1)
    assert with_sink == baseline
    assert (abs(sunk["nll"].to_numpy() - narrow["nll"].to_numpy()) > 1e-7).all()


def test_sweep_layer_choice_keeps_to_global_layers(tiny_models) -> None:
    layout = attention_layout(tiny_models["gemma3n"].model.config)  # layer 0 local, 1 global
    assert chosen_layers(layout, "global") == [1]
    assert chosen_layers(layout, "1") == [1]
    with pytest.raises(SubnetScopeError, match="already local"):
        chosen_layers(layout, "0-1")
    with pytest.raises(SubnetScopeError, match="does not exist"):
        chosen_layers(layout, "5")
    all_local = attention_layout(tiny_models["gemma3"].model.config)
    with pytest.raises(SubnetScopeError, match="no global attention layer"):
        chosen_layers(all_local, "global")


def test_sweep_reads_token_windows_of_a_source_and_refuses_too_long_ones(tiny_models) -> None:
    loaded = tiny_models["qwen2"]
    result = run_sweep(SweepConfig(texts=2, max_tokens=24, windows=(4,)), loaded=loaded)
    assert result.baseline["texts"] == 2 and result.baseline["max_tokens"] == 24
    assert result.baseline["tokens"] == 2 * 23
    assert list(result.layout["layer"]) == [0, 1]
    summary = result.summary()
    assert summary["cheapest_layer"] in (0, 1) and "cheapest layer" in summary["message"]
    with pytest.raises(SubnetScopeError, match="64 positions"):
        run_sweep(SweepConfig(max_tokens=128), loaded=loaded)


def test_context_stats_are_head_stats_at_each_length(tiny_models) -> None:
    loaded = tiny_models["gemma3n"]
    texts = long_texts(loaded.tokenizer, [TEXT[:30], TEXT[30:90], TEXT], length=48, count=1)
    assert len(texts) == 1 and len(loaded.tokenizer(texts[0])["input_ids"]) >= 48
    frame, timing = context_stats(loaded, texts, (16, 48), window=4)
    assert list(timing["length"]) == [16, 48] and (timing["tokens"] == [16, 48]).all()
    direct = head_stats(loaded, texts, window=4, max_tokens=16).frame
    at_16 = frame[frame["length"] == 16].drop(columns="length").reset_index(drop=True)
    pd.testing.assert_frame_equal(at_16, direct)
    # The largest score block grows with the length (heads × rows × keys × 4 bytes here).
    assert timing["largest_block_bytes"].is_monotonic_increasing
    with pytest.raises(SubnetScopeError, match="fewer than the 2 asked"):
        long_texts(loaded.tokenizer, [TEXT[:30]], length=20, count=2)


def test_context_refuses_lengths_beyond_the_model_positions(tiny_models) -> None:
    with pytest.raises(SubnetScopeError, match="64 positions"):
        run_context(ContextConfig(lengths=(32, 128)), loaded=tiny_models["llama"])


def test_jobs_write_their_tables(ctx, tiny_folder) -> None:
    folder = tiny_folder("llama")
    summary = sweep_job({"model": folder, "texts": 2, "max_tokens": 24, "windows": [4, 8]}, ctx)
    sweep = pd.read_parquet(ctx.result_dir / "sweep.parquet")
    assert len(sweep) == 2 * 2 and set(sweep["window"]) == {4, 8}
    baseline = json.loads((ctx.result_dir / "baseline.json").read_text())
    assert baseline["model"] == folder and baseline["dtype"] == "float32"
    assert summary["windows"] == [4, 8] and len(summary["per_window"]) == 2
    assert len(pd.read_parquet(ctx.result_dir / "layout.parquet")) == 2
    assert any(e.get("name") == "delta_nll" for e in events_of(ctx))

    summary = context_job({"model": folder, "lengths": [16, 32], "window": 4}, ctx)
    context = pd.read_parquet(ctx.result_dir / "context.parquet")
    assert set(context["length"]) == {16, 32} and len(context) == 2 * 2 * 2  # lengths×layers×heads
    timing = pd.read_parquet(ctx.result_dir / "timing.parquet")
    assert list(timing.columns) == ["length", "seconds", "largest_block_bytes", "tokens"]
    assert summary["lengths"] == [16, 32]
    with pytest.raises(SubnetScopeError, match="unknown key"):
        sweep_job({"model": folder, "lengths": [16]}, ctx)


def test_demo_parts_declare_valid_params() -> None:
    from engine.demo.registry import PARTS
    from engine.jobs import get_kind

    parts = {p.name: p for p in PARTS}
    sweep, context = parts["attention-sweep"], parts["attention-context"]
    assert sweep.view == context.view == "attention"
    assert SweepConfig.from_params(sweep.params) == SweepConfig(windows=(32,), texts=4)
    assert ContextConfig.from_params(context.params).lengths == (128, 256, 512, 1024, 2048)
    for part in (sweep, context):  # what submit stores equals the part's params (demo status)
        assert {**get_kind(part.job_kind).defaults, **part.params} == part.params


@pytest.mark.slow
def test_making_layer_20_of_the_demo_model_local_costs_loss(demo_model) -> None:
    """The issue's walk on the demo model (all layers global): layer 20 local at w = 32."""
    config = SweepConfig(texts=1, max_tokens=128, layers="20")
    result = run_sweep(config, loaded=demo_model)
    row = result.frame.iloc[0]
    assert row["layer"] == 20 and row["window"] == 32
    assert row["delta_nll"] > 0.01  # measured +0.13 over 4 × 256 tokens (the demo part)
