"""The capacity meter's numerics: H(X), planted models (uniform: 0 bits, lookup: H(X)), the
paper's parameter count, the capacity table, the config, and one tiny end-to-end job."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from engine.capacity.config import CAPACITY_FILE, RUNS_FILE, MeterConfig
from engine.capacity.jobs import meter_job
from engine.capacity.meter import (
    dataset_bits,
    memorized_bits,
    model_logits,
    random_sequences,
    with_bos,
)
from engine.capacity.model import build_model, counted_parameters, parameter_count
from engine.capacity.sweep import CAPACITY_COLUMNS, RUN_COLUMNS, capacity_table
from engine.errors import SubnetScopeError
from engine.jobs.tensorboard import wants_tensorboard
from tests.job_support import events_of


def test_dataset_bits_are_exact_and_the_data_is_seeded_uniform() -> None:
    assert dataset_bits(1, 64, 2048) == 704.0  # the paper's 704 bits per sequence
    assert dataset_bits(3, 5, 16) == 3 * 5 * 4
    a, b = random_sequences(400, 16, 8, seed=3), random_sequences(400, 16, 8, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, random_sequences(400, 16, 8, seed=4))
    assert a.shape == (400, 16) and int(a.min()) == 0 and int(a.max()) == 7
    counts = torch.bincount(a.flatten(), minlength=8).double()
    assert (counts / counts.sum() - 1 / 8).abs().max() < 0.02
    with pytest.raises(SubnetScopeError, match="V ≥ 2"):
        random_sequences(4, 4, 1, seed=0)


def test_the_uniform_model_memorizes_nothing() -> None:
    ids = random_sequences(12, 10, 32, seed=0)

    def uniform(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*x.shape, 32)  # (b, S, V): p = 1/V everywhere

    m = memorized_bits(uniform, ids, 32, batch=5)
    assert m.data_bits == 12 * 10 * 5
    assert m.nll_bits == pytest.approx(m.data_bits, abs=1e-9)
    assert abs(m.memorized_bits) < 1e-9 and m.mem_u_bits < 1e-9


def test_a_lookup_model_memorizes_the_whole_dataset() -> None:
    """A model that stored every training sequence puts probability 1 on each next token."""
    vocab = 16
    ids = random_sequences(20, 8, vocab, seed=1)
    stored = {tuple(row.tolist()): row for row in ids}

    def lookup(x: torch.Tensor) -> torch.Tensor:
        rows = torch.stack([stored[tuple(row.tolist())] for row in x])  # (b, S)
        return torch.nn.functional.one_hot(rows, vocab).float() * 1e4  # (b, S, V)

    m = memorized_bits(lookup, ids, vocab, batch=7)
    assert m.nll_bits == 0.0
    assert m.memorized_bits == m.data_bits == dataset_bits(20, 8, vocab) == 20 * 8 * 4
    assert m.mem_u_bits == m.data_bits


def test_parameter_count_matches_the_paper_and_the_built_model() -> None:
    # 1 layer × d 32 at V = 2048, S = 64: 80.4K; 2L × d128: 667K (arXiv 2505.24832 §3.2, Table 1).
    assert parameter_count(1, 32, 2048, 64) == 80_352
    assert round(parameter_count(2, 128, 2048, 64), -3) == 667_000
    for layers, width, vocab, positions in [(1, 32, 2048, 64), (2, 16, 17, 8), (3, 8, 257, 32)]:
        model = build_model(layers, width, vocab, positions)
        assert counted_parameters(model) == parameter_count(layers, width, vocab, positions)
        assert model.lm_head.weight is model.transformer.wte.weight  # tied: counted once


def test_the_model_reads_bos_then_the_prefix_and_scores_the_data_alphabet() -> None:
    torch.manual_seed(0)
    model = build_model(1, 16, 9, 6).eval()  # V = 8 plus BOS = 8
    ids = random_sequences(2, 6, 8, seed=0)
    assert with_bos(ids, 8)[:, 0].tolist() == [8, 8]
    assert torch.equal(with_bos(ids, 8)[:, 1:], ids[:, :-1])
    logits_of = model_logits(model, 8)
    with torch.inference_mode():
        out = logits_of(ids)
        changed = ids.clone()
        changed[:, 3] = (changed[:, 3] + 1) % 8
        after = logits_of(changed)
    assert out.shape == (2, 6, 8)
    assert torch.allclose(out[:, :4], after[:, :4])  # position i sees tokens before i only
    assert not torch.allclose(out[:, 4:], after[:, 4:])


def _runs(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["size", "layers", "width", "params", "n", "precision", "seed", "mem"]
    )
    return frame.assign(
        data_bits=frame["n"] * 100.0,
        nll_bits=frame["n"] * 100.0 - frame["mem"],
        memorized_bits=frame["mem"],
        mem_u_bits=frame["mem"],
        best_step=1,
        steps=1,
        converged=True,
        seconds=1.0,
    )[RUN_COLUMNS]


def test_capacity_is_the_plateau_over_n_averaged_over_seeds() -> None:
    runs = _runs(
        [
            ("1L×d8", 1, 8, 100, 1, "fp32", 0, 100.0),
            ("1L×d8", 1, 8, 100, 4, "fp32", 0, 300.0),
            ("1L×d8", 1, 8, 100, 4, "fp32", 1, 340.0),
            ("1L×d8", 1, 8, 100, 8, "fp32", 0, 310.0),
            ("1L×d8", 1, 8, 100, 8, "fp32", 1, 310.0),
            ("1L×d16", 1, 16, 400, 1, "bf16", 0, 99.0),  # the data, not the model, limits
        ]
    )
    table = capacity_table(runs).set_index(["size", "precision"])
    assert list(capacity_table(runs).columns) == CAPACITY_COLUMNS
    small = table.loc[("1L×d8", "fp32")]
    assert small["capacity_bits"] == 320.0 and small["n_at_max"] == 4  # mean of 300 and 340
    assert small["bits_per_param"] == 3.2 and small["saturated"] and small["runs"] == 5
    big = table.loc[("1L×d16", "bf16")]
    assert not big["saturated"] and big["paper_bits_per_param"] == 3.51


def test_config_checks_its_options() -> None:
    config = MeterConfig(sizes=["1x32", (1, 8), "1x8"], n=[64, 16], precisions=["bf16", "fp32"])
    assert config.sizes == ((1, 8), (1, 32)) and config.n == (16, 64)
    assert config.precisions == ("fp32", "bf16") and config.runs == 2 * 2 * 2
    params = config.to_params()
    assert params["sizes"] == [[1, 8], [1, 32]] and MeterConfig.from_params(params) == config
    with pytest.raises(SubnetScopeError, match="'LxW'"):
        MeterConfig(sizes=["big"])
    with pytest.raises(SubnetScopeError, match="precisions must be among"):
        MeterConfig(precisions=["fp16"])
    with pytest.raises(SubnetScopeError, match="N ≥ 1"):
        MeterConfig(n=[0])
    with pytest.raises(SubnetScopeError, match="unknown key"):
        MeterConfig.from_params({"steps": 3})
    assert wants_tensorboard(MeterConfig().to_params())  # the executor opens event files
    assert not wants_tensorboard(MeterConfig(report_to="none").to_params())


@pytest.mark.slow
def test_a_tiny_meter_job_memorizes_nearly_everything(ctx) -> None:
    """Four sequences of 8 tokens over V = 16 (128 bits) in a 1L×d16 model (~4K parameters):
    far under capacity, so training drives the memorized bits close to H(X)."""
    params = {
        "sizes": ["1x16"],
        "n": [4],
        "vocab": 16,
        "length": 8,
        "precisions": ["fp32", "bf16"],
        "max_steps": 300,
        "eval_every": 50,
    }
    summary = meter_job(params, ctx)
    runs = pd.read_parquet(ctx.result_dir / RUNS_FILE)
    capacity = pd.read_parquet(ctx.result_dir / CAPACITY_FILE)
    assert list(runs.columns) == RUN_COLUMNS and len(runs) == 2
    assert (runs["data_bits"] == 4 * 8 * 4).all()
    assert (runs["memorized_bits"] > 0.9 * runs["data_bits"]).all(), runs
    assert (runs["memorized_bits"] <= runs["data_bits"] + 1e-9).all()
    assert (runs["mem_u_bits"] >= runs["memorized_bits"] - 1e-6).all()  # per sequence ≥ total
    assert list(capacity["precision"]) == ["fp32", "bf16"]
    assert summary["runs"] == 2 and set(summary["bits_per_param"]) == {
        "1L×d16 fp32",
        "1L×d16 bf16",
    }
    names = {e.get("name") for e in events_of(ctx) if e["type"] == "metric"}
    assert {"bits_per_param", "capacity_bits_per_param"} <= names
    assert {
        "memorized_bits/1L×d16 fp32 N=4 seed 0",
        "memorized_bits/1L×d16 bf16 N=4 seed 0",
    } <= names
    assert math.isclose(
        capacity["bits_per_param"].iloc[0],
        runs["memorized_bits"].iloc[0] / runs["params"].iloc[0],
    )


def test_the_demo_part_declares_full_valid_params() -> None:
    from engine.capacity.config import DEMO_METER, KIND, MeterConfig
    from engine.demo.registry import PARTS
    from engine.jobs import get_kind

    [part] = [p for p in PARTS if p.name == "capacity"]
    assert part.job_kind == KIND and part.view == "capacity"
    assert MeterConfig.from_params(DEMO_METER).n == (64, 128, 256, 512)
    assert {**get_kind(KIND).defaults, **part.params} == part.params  # what submit stores
