"""Full fine-tuning (`train.full`): the baseline of the LoRA, ReLoRA and rank-1 runs on a tiny
model — rank and subspace tables like theirs, every weight or only the targets trained."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from safetensors.torch import load_file

from engine.errors import SubnetScopeError
from engine.training.config import CONFIGS, FullConfig
from engine.training.rank_tracking import RANK_TABLE, SUBSPACE_TABLE

SMALL = {
    "steps": 4,
    "batch_size": 2,
    "max_length": 32,
    "eval_texts": 2,
    "limit": 24,
    "lr": 1e-3,
    "rank_every": 2,
}


@pytest.mark.parametrize("trainable", ["all", "targets"])
def test_full_run_tracks_rank_and_subspaces(ctx, tiny_folder, trainable):
    from engine.training.full_ft import run_full

    source = tiny_folder("llama")
    config = FullConfig(
        model=source,
        trainable=trainable,
        target_modules="q_proj,v_proj",
        diagnostics_every=2,
        track_memorization=trainable == "all",
        memorization_examples=2,
        **SMALL,
    )
    summary = run_full(config, ctx)
    assert summary["kind"] == "full" and summary["trainable"] == trainable
    ranks = pd.read_parquet(ctx.result_dir / RANK_TABLE)
    assert sorted(ranks.step.unique()) == [2, 4]
    assert (ranks.effective_rank > 1).all()  # full-rank updates, unlike a rank-1 step
    subspaces = pd.read_parquet(ctx.result_dir / SUBSPACE_TABLE)
    assert set(subspaces.side) == {"out", "in"} and subspaces.overlap_final.between(0, 1).all()
    trained = load_file(ctx.result_dir / "model" / "model.safetensors")
    before = load_file(f"{source}/model.safetensors")
    moved = {k for k in before if not (trained[k] == before[k]).all()}
    targets = {k for k in moved if "q_proj" in k or "v_proj" in k}
    assert targets and (moved == targets) == (trainable == "targets")
    json.dumps(summary, default=str)
    diagnostics = pd.read_parquet(ctx.result_dir / "diagnostics.parquet")
    assert set(diagnostics.step) == {2, 4} and (diagnostics.value >= 0).any()
    assert (ctx.result_dir / "memorization.parquet").is_file() == (trainable == "all")


def test_full_config_is_checked_and_listed():
    assert CONFIGS["full"] is FullConfig
    with pytest.raises(SubnetScopeError, match="trainable"):
        FullConfig(trainable="some")
    from engine.jobs import load_kinds

    assert load_kinds()["train.full"].result_page == "lora"
