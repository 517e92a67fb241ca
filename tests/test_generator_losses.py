"""The generator's losses against hand computations, the ΔW gauge, and the delta-guided terms."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.lora.generator.losses import (
    LOSS_MODES,
    LossWeights,
    combined_loss,
    delta_loss,
    delta_w_loss,
    weight_loss,
)


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def _pairs(seed: int, batch: int = 2, r: int = 2, shapes=((5, 3), (4, 6))) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        f"m{i}": (
            torch.randn(batch, r, d_in, generator=g),  # A (batch, r, d_in)
            torch.randn(batch, d_out, r, generator=g),  # B (batch, d_out, r)
        )
        for i, (d_out, d_in) in enumerate(shapes)
    }


def test_weight_loss_by_hand():
    # One module, batch 1, rank 1: A (1, 1, 2), B (1, 2, 1).
    pred = {"m": (_t([[[1.0, 2.0]]]), _t([[[0.0], [1.0]]]))}
    teacher = {"m": (_t([[[1.0, 0.0]]]), _t([[[2.0], [1.0]]]))}
    # MSE(A) = (0 + 4) / 2 = 2; MSE(B) = (4 + 0) / 2 = 2.
    assert weight_loss(pred, teacher).item() == pytest.approx(4.0)
    # Two modules: the mean of the two sums.
    pred["n"] = (_t([[[1.0]]]), _t([[[1.0]]]))
    teacher["n"] = (_t([[[0.0]]]), _t([[[0.0]]]))
    assert weight_loss(pred, teacher).item() == pytest.approx((4.0 + 2.0) / 2)


def test_delta_w_loss_by_hand():
    # ΔW_p = s·B_p A_p = 2·[[1, 2], [0, 0]]; ΔW_t = 2·[[0, 0], [1, 1]] (rank 1).
    pred = {"m": (_t([[[1.0, 2.0]]]), _t([[[1.0], [0.0]]]))}
    teacher = {"m": (_t([[[1.0, 1.0]]]), _t([[[0.0], [1.0]]]))}
    # difference 2·[[1, 2], [-1, -1]]: squared sum 4·(1 + 4 + 1 + 1) = 28, over 4 entries = 7.
    assert delta_w_loss(pred, teacher, 2.0).item() == pytest.approx(7.0)


def test_delta_w_loss_equals_the_dense_mse():
    pred, teacher = _pairs(0), _pairs(1)
    scale = 1.7
    dense = []
    for path in pred:
        (a_p, b_p), (a_t, b_t) = pred[path], teacher[path]
        diff = scale * (b_p @ a_p) - scale * (b_t @ a_t)  # (batch, d_out, d_in)
        dense.append(diff.square().mean())
    expected = torch.stack(dense).mean()
    assert delta_w_loss(pred, teacher, scale).item() == pytest.approx(expected.item(), rel=1e-5)
    assert delta_w_loss(teacher, teacher, scale).item() == pytest.approx(0.0, abs=1e-9)


def test_delta_w_loss_is_gauge_invariant_and_weight_loss_is_not():
    pred, teacher = _pairs(2), _pairs(3)
    g = torch.Generator().manual_seed(4)
    gauged = {}
    for path, (a, b) in pred.items():
        r = a.shape[-2]
        gauge = torch.randn(r, r, generator=g) + 3 * torch.eye(r)  # invertible
        gauged[path] = (torch.linalg.inv(gauge) @ a, b @ gauge)  # (G⁻¹ A, B G)
    before = delta_w_loss(pred, teacher, 0.5).item()
    assert delta_w_loss(gauged, teacher, 0.5).item() == pytest.approx(before, rel=1e-4)
    assert weight_loss(gauged, teacher).item() != pytest.approx(weight_loss(pred, teacher).item())


def test_delta_w_loss_reaches_both_factors():
    pred = {p: (a.requires_grad_(), b.requires_grad_()) for p, (a, b) in _pairs(5).items()}
    delta_w_loss(pred, _pairs(6), 2.0).backward()
    for a, b in pred.values():
        assert a.grad is not None and a.grad.abs().sum() > 0
        assert b.grad is not None and b.grad.abs().sum() > 0


def test_delta_loss_by_hand():
    pred = _t([[3.0, 4.0], [1.0, 0.0]])
    teacher = _t([[3.0, 4.0], [0.0, 2.0]])
    # Row 0: same direction; row 1: orthogonal (unit difference (1, -1): squared sum 2).
    assert delta_loss(pred, teacher, "nmse").item() == pytest.approx(2.0 / 4)
    assert delta_loss(pred, teacher, "cos").item() == pytest.approx((0.0 + 1.0) / 2)
    # nmse = (2 − 2 cos) / d on each row.
    p, t = torch.randn(3, 7), torch.randn(3, 7)
    cos = torch.nn.functional.cosine_similarity(p, t, dim=-1)
    assert delta_loss(p, t).item() == pytest.approx(((2 - 2 * cos) / 7).mean().item(), rel=1e-5)
    # Scale-free.
    assert delta_loss(10 * p, t).item() == pytest.approx(delta_loss(p, t).item(), rel=1e-5)
    with pytest.raises(SubnetScopeError, match="unknown delta loss"):
        delta_loss(p, t, "l1")


def test_combined_loss_modes_and_weights():
    pred, teacher = _pairs(7), _pairs(8)
    d_pred, d_teacher, d_head = torch.randn(2, 5), torch.randn(2, 5), torch.randn(2, 5)
    w = LossWeights(weight=0.3, delta=2.0, head=0.7, computed=1.3, consistency=0.4)
    l_w = weight_loss(pred, teacher).item()
    l_dw = delta_w_loss(pred, teacher, 1.5).item()
    l_d = delta_loss(d_pred, d_teacher).item()
    args = {"pred": pred, "teacher": teacher, "scale": 1.5}
    deltas = {"delta_pred": d_pred, "delta_teacher": d_teacher, "delta_head": d_head}
    expected = {
        "weight": l_w,
        "delta_w": l_dw,
        "delta": l_d,
        "multitask": 0.3 * l_w + 2.0 * l_d,
        "delta_guided": 0.7 * delta_loss(d_head, d_teacher).item()
        + 1.3 * l_d
        + 0.4 * delta_loss(d_pred, d_head).item(),
    }
    assert set(expected) == set(LOSS_MODES)
    for mode, value in expected.items():
        loss, terms = combined_loss(mode, w, **args, **deltas)
        assert loss.item() == pytest.approx(value, rel=1e-5), mode
        assert terms["loss"] == pytest.approx(value, rel=1e-5)
    _, terms = combined_loss("multitask", w, **args, **deltas)
    assert terms["weight"] == pytest.approx(l_w) and terms["delta"] == pytest.approx(l_d)
    # The cos kind reaches every delta term.
    loss, _ = combined_loss("delta", LossWeights(kind="cos"), **deltas)
    assert loss.item() == pytest.approx(delta_loss(d_pred, d_teacher, "cos").item())
    # LLGBM's defaults.
    assert (LossWeights().weight, LossWeights().delta) == (1.0, 0.1)
    assert (LossWeights().head, LossWeights().computed, LossWeights().consistency) == (1, 1, 0.5)


def test_combined_loss_errors():
    with pytest.raises(SubnetScopeError, match="unknown loss mode"):
        combined_loss("fancy", LossWeights())
    with pytest.raises(SubnetScopeError, match="needs delta_pred and delta_teacher"):
        combined_loss("delta", LossWeights())
    with pytest.raises(SubnetScopeError, match="disagree on module"):
        weight_loss(_pairs(0), {"other": _pairs(1)["m0"]})


def test_delta_guided_consistency_gives_the_head_no_gradient():
    d_teacher = torch.randn(2, 6)
    d_pred = torch.randn(2, 6, requires_grad=True)
    d_head = torch.randn(2, 6, requires_grad=True)
    only_consistency = LossWeights(head=0.0, computed=0.0, consistency=1.0)
    loss, terms = combined_loss(
        "delta_guided",
        only_consistency,
        delta_pred=d_pred,
        delta_teacher=d_teacher,
        delta_head=d_head,
    )
    loss.backward()
    assert terms["consistency"] > 0
    assert d_pred.grad is not None and d_pred.grad.abs().sum() > 0
    assert d_head.grad is None or d_head.grad.abs().sum() == 0
    # Head-only steps (no computed δ): only the head term, and it trains the head.
    d_head.grad = None
    loss, terms = combined_loss(
        "delta_guided", LossWeights(), delta_teacher=d_teacher, delta_head=d_head
    )
    loss.backward()
    assert set(terms) == {"head", "loss"}
    assert d_head.grad.abs().sum() > 0
    assert math.isfinite(terms["loss"])
