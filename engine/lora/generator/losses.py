"""The generator's losses (LLGBM, seed 004): weights, the gauge-invariant ΔW, delta activations.

`pred` / `teacher` are {path: (A (batch, r, d_in), B (batch, d_out, r))} with the same shapes;
every loss returns a differentiable scalar tensor. Light at import (torch loads inside the
functions), so configs can read LOSS_MODES and LossWeights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import SubnetScopeError

if TYPE_CHECKING:
    from torch import Tensor

    Pairs = Mapping[str, tuple[Tensor, Tensor]]

LOSS_MODES = ("weight", "delta_w", "delta", "multitask", "delta_guided")
DELTA_KINDS = ("nmse", "cos")


@dataclass(frozen=True)
class LossWeights:
    """λ of each term; the defaults are LLGBM's (MultiTaskLoss 1 / 0.1, DeltaGuidedLoss 1/1/0.5)."""

    weight: float = 1.0  # multitask: λ_w on the weight loss
    delta: float = 0.1  # multitask: λ_d on the delta loss
    kind: str = "nmse"  # delta loss: "nmse" (MSE of unit vectors) or "cos" (1 − cos)
    head: float = 1.0  # delta_guided: λp, the δ head against the teacher's δ
    computed: float = 1.0  # delta_guided: λc, the computed δ against the teacher's δ
    consistency: float = 0.5  # delta_guided: λs, the computed δ against the (frozen) head's δ


def _paths(pred: Pairs, teacher: Pairs) -> list[str]:
    if not pred:
        raise SubnetScopeError("the loss needs at least one module")
    if set(pred) != set(teacher):
        odd = sorted(set(pred) ^ set(teacher))[0]
        raise SubnetScopeError(f"prediction and teacher disagree on module '{odd}'")
    for path in pred:
        for p, t in zip(pred[path], teacher[path], strict=True):
            if p.shape != t.shape:
                raise SubnetScopeError(
                    f"'{path}': predicted factor {tuple(p.shape)} vs teacher {tuple(t.shape)}"
                )
    return list(pred)


def weight_loss(pred: Pairs, teacher: Pairs) -> Tensor:
    """LLGBM's WeightLoss: mean over modules of MSE(A) + MSE(B) on the raw factors."""
    import torch.nn.functional as F

    paths = _paths(pred, teacher)
    terms = [
        F.mse_loss(pred[p][0], teacher[p][0].to(pred[p][0].dtype))
        + F.mse_loss(pred[p][1], teacher[p][1].to(pred[p][1].dtype))
        for p in paths
    ]
    return sum(terms[1:], terms[0]) / len(terms)


def delta_w_loss(pred: Pairs, teacher: Pairs, scale: float) -> Tensor:
    """Mean over modules (and batch) of ‖s·B_p A_p − s·B_t A_t‖²_F / (d_out·d_in): the MSE of the
    dense ΔW, from the factors alone.

    With B = [B_p, −B_t] (d_out, 2r) and A = [A_p; A_t] (2r, d_in), the difference is s·B @ A and
    ‖B A‖² = tr((BᵀB)(AAᵀ)): two 2r × 2r Gram matrices, never a d_out × d_in matrix (LLGBM's
    DeltaWLoss builds it). Gauge-invariant: (B G, G⁻¹ A) gives the same loss for any invertible G.
    Accumulated in float64 (float32 on MPS) against the cancellation of two near-equal updates.
    """
    import torch

    from engine.models.devices import accumulation_dtype

    paths = _paths(pred, teacher)
    terms = []
    for p in paths:
        a_p, b_p = pred[p]  # (batch, r, d_in), (batch, d_out, r)
        a_t, b_t = teacher[p]
        dtype = accumulation_dtype(a_p.device)
        a = torch.cat([a_p, a_t.to(a_p.device)], dim=-2).to(dtype)  # (batch, 2r, d_in)
        b = torch.cat([b_p, -b_t.to(b_p.device)], dim=-1).to(dtype)  # (batch, d_out, 2r)
        gram_b = b.transpose(-1, -2) @ b  # (batch, 2r, 2r)
        gram_a = a @ a.transpose(-1, -2)  # (batch, 2r, 2r), symmetric
        squared = (gram_b * gram_a).sum(dim=(-1, -2))  # (batch,) = tr(gram_b @ gram_a)
        d_out, d_in = b.shape[-2], a.shape[-1]
        terms.append((scale**2) * squared.clamp_min(0).mean() / (d_out * d_in))
    return (torch.stack(terms).mean()).to(pred[paths[0]][0].dtype)


def delta_loss(pred: Tensor, teacher: Tensor, kind: str = "nmse") -> Tensor:
    """Between delta activations (batch, hidden): "nmse" = MSE of the unit-normalised vectors
    (= (2 − 2·cos)/hidden), "cos" = mean of 1 − cos. Zero vectors count as orthogonal."""
    import torch.nn.functional as F

    if kind not in DELTA_KINDS:
        raise SubnetScopeError(f"unknown delta loss '{kind}'; use one of {', '.join(DELTA_KINDS)}")
    if pred.shape != teacher.shape or pred.ndim != 2:
        raise SubnetScopeError(
            f"delta loss takes two (batch, hidden) tensors, got {tuple(pred.shape)} and "
            f"{tuple(teacher.shape)}"
        )
    p = F.normalize(pred, dim=-1, eps=1e-12)
    t = F.normalize(teacher.to(pred.dtype), dim=-1, eps=1e-12)
    if kind == "nmse":
        return F.mse_loss(p, t)
    return (1 - (p * t).sum(dim=-1)).mean()


def _need(mode: str, **given: object) -> None:
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise SubnetScopeError(f"the {mode} loss needs {' and '.join(missing)}")


def combined_loss(
    mode: str,
    w: LossWeights,
    *,
    pred: Pairs | None = None,
    teacher: Pairs | None = None,
    scale: float = 1.0,
    delta_pred: Tensor | None = None,
    delta_teacher: Tensor | None = None,
    delta_head: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one training mode and its terms as floats ({term: value}, plus "loss").

    weight: L_w; delta_w: L_ΔW; delta: L_d(δ_pred, δ_T); multitask: λ_w·L_w + λ_d·L_d;
    delta_guided: λp·L(δ_head, δ_T) + λc·L(δ_pred, δ_T) + λs·L(δ_pred, stopgrad δ_head). The
    consistency term trains the LoRA path, never the head. In delta_guided mode `delta_pred` may be
    None: then only the head term (LLGBM's head-only steps).
    """
    if mode not in LOSS_MODES:
        raise SubnetScopeError(f"unknown loss mode '{mode}'; use one of {', '.join(LOSS_MODES)}")
    terms: dict = {}
    if mode == "weight":
        _need(mode, pred=pred, teacher=teacher)
        terms["weight"] = weight_loss(pred, teacher)
        loss = terms["weight"]
    elif mode == "delta_w":
        _need(mode, pred=pred, teacher=teacher)
        terms["delta_w"] = delta_w_loss(pred, teacher, scale)
        loss = terms["delta_w"]
    elif mode == "delta":
        _need(mode, delta_pred=delta_pred, delta_teacher=delta_teacher)
        terms["delta"] = delta_loss(delta_pred, delta_teacher, w.kind)
        loss = terms["delta"]
    elif mode == "multitask":
        _need(mode, pred=pred, teacher=teacher, delta_pred=delta_pred, delta_teacher=delta_teacher)
        terms["weight"] = weight_loss(pred, teacher)
        terms["delta"] = delta_loss(delta_pred, delta_teacher, w.kind)
        loss = w.weight * terms["weight"] + w.delta * terms["delta"]
    else:
        _need(mode, delta_head=delta_head, delta_teacher=delta_teacher)
        terms["head"] = delta_loss(delta_head, delta_teacher, w.kind)
        loss = w.head * terms["head"]
        if delta_pred is not None:
            terms["computed"] = delta_loss(delta_pred, delta_teacher, w.kind)
            terms["consistency"] = delta_loss(delta_pred, delta_head.detach(), w.kind)
            loss = loss + w.computed * terms["computed"] + w.consistency * terms["consistency"]
    values = {name: float(value.detach()) for name, value in terms.items()}
    values["loss"] = float(loss.detach())
    return loss, values
