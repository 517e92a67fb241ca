"""The subspace trajectory of a run's updates (engine/training/rank_tracking.py): principal
angles against scipy, the LoRA-factor path against the dense one, planted trajectories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.linalg import subspace_angles

from engine.jobs import JobContext
from engine.lora import Factors
from engine.training.rank_tracking import SUBSPACE_TABLE, RankTracker, SubspaceTrajectory

MODULE = "model.layers.0.self_attn.q_proj"


def _top(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    u, s, vh = np.linalg.svd(matrix)
    k = min(k, int((s > 1e-6 * s[0]).sum()))
    return u[:, :k], vh[:k].T


def _mean_cos2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.cos(subspace_angles(a, b)) ** 2))


def _factors(seed: int, rank: int = 3) -> Factors:
    g = torch.Generator().manual_seed(seed)
    return Factors(torch.randn(12, rank, generator=g), torch.randn(rank, 10, generator=g), 0.5)


def test_overlaps_equal_scipy_on_the_dense_increments():
    steps = [_factors(seed) for seed in range(3)]
    accumulated = [sum(f.scale * f.b @ f.a for f in steps[: i + 1]) for i in range(3)]
    trajectory = SubspaceTrajectory()
    for step, delta in enumerate(accumulated, start=1):
        trajectory.record(step, {MODULE: delta})
    table = trajectory.table()
    increments = [accumulated[0], accumulated[1] - accumulated[0], accumulated[2] - accumulated[1]]
    tops = [_top(d.double().numpy(), 8) for d in increments]
    final = _top(accumulated[2].double().numpy(), 8)
    for side, i in (("out", 0), ("in", 1)):
        rows = table[table.side == side].sort_values("step")
        assert np.isnan(rows.overlap_prev.iloc[0])
        for n in (1, 2):
            expected = _mean_cos2(tops[n][i], tops[n - 1][i])
            assert abs(rows.overlap_prev.iloc[n] - expected) < 1e-6
        for n in range(3):
            assert abs(rows.overlap_final.iloc[n] - _mean_cos2(tops[n][i], final[i])) < 1e-6
        assert list(rows.dim) == [3, 3, 3]


def test_the_factor_path_equals_the_dense_path():
    lora = [_factors(seed) for seed in (5, 6, 7)]  # the live factors at three records
    dense, factored = SubspaceTrajectory(), SubspaceTrajectory()
    for step, f in enumerate(lora, start=1):
        dense.record(step, {MODULE: f.scale * f.b @ f.a})
        factored.record(step, {MODULE: f})
    a, b = dense.table(), factored.table()
    cols = ["overlap_prev", "angle_prev_max", "overlap_final"]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), atol=1e-4)
    assert list(a.dim) == list(b.dim)  # an increment of two rank-3 updates: rank ≤ 6


def test_planted_trajectories_one_direction_and_orthogonal_steps():
    u = torch.linalg.qr(torch.randn(12, 4))[0]
    v = torch.linalg.qr(torch.randn(10, 4))[0]
    same, turning = SubspaceTrajectory(), SubspaceTrajectory()
    for step in range(1, 4):
        same.record(step, {MODULE: step * torch.outer(u[:, 0], v[:, 0])})
        turning.record(step, {MODULE: sum(torch.outer(u[:, i], v[:, i]) for i in range(step))})
    rows = same.table()
    assert np.allclose(rows.overlap_prev.dropna(), 1.0) and np.allclose(rows.overlap_final, 1.0)
    rows = turning.table()
    assert np.allclose(rows.overlap_prev.dropna(), 0.0, atol=1e-10)  # each step a new direction
    assert np.allclose(rows.angle_prev_max.dropna(), 90.0)
    # Each rank-1 step lies inside the final rank-3 update's span.
    assert np.allclose(rows.overlap_final, 1.0)


def test_the_tracker_writes_the_table_and_metrics(tmp_path):
    ctx = JobContext(tmp_path, lambda **changes: None)
    tracker = RankTracker(ctx)
    for step in (1, 2):
        tracker.record_factors(step, {MODULE: _factors(step)})
    tracker.write()
    table = pd.read_parquet(tmp_path / "result" / SUBSPACE_TABLE)
    assert len(table) == 4 and set(table.side) == {"out", "in"}
    events = (tmp_path / "events.jsonl").read_text()
    assert "subspace/overlap_prev" in events and "subspace/overlap_final" in events


def test_float32_rounding_adds_no_directions_to_a_dense_increment():
    from engine.training.rank_tracking import dense_directions

    torch.manual_seed(0)
    start = torch.randn(96, 160) * 0.05
    weights = start.clone()
    for k in range(5):  # five rank-1 steps applied to float32 weights
        u, v = torch.randn(96), torch.randn(160)
        weights = weights + 1e-3 * (0.5 + k / 5) * torch.outer(u / u.norm(), v / v.norm())
    out, inp = dense_directions(weights - start)
    assert out.shape[1] == inp.shape[1] == 5
