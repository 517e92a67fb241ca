"""Lesion and preserve masks from ICA templates, applied through the per-call neuron masks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from engine.errors import SubnetScopeError
from engine.ica.templates import Templates
from engine.models import NeuronMask
from engine.models.architectures import Architecture

MaskMode = Literal["lesion", "preserve"]
MASK_MODES: tuple[str, ...] = ("lesion", "preserve")


def ica_mask(templates: Templates, component_ids: Sequence[int], mode: str) -> NeuronMask:
    """lesion: the chosen components' key neurons output 0; preserve: every other neuron of the
    templates' layers outputs 0 (seed 001's two modes)."""
    if mode not in MASK_MODES:
        raise SubnetScopeError(f"unknown mask mode '{mode}'; use lesion or preserve")
    ids = [int(c) for c in component_ids]
    if not ids:
        raise SubnetScopeError("choose at least one component to lesion or preserve")
    templates.check_components(ids)
    pairs = {pair for c in ids for pair in templates.neurons(c)}
    meta = {"source": "ica", "mode": mode, "components": ids}
    if templates.path is not None:
        meta["templates"] = str(templates.path)
    if mode == "lesion":
        return NeuronMask.from_pairs(sorted(pairs), mode="zero", meta=meta)
    return NeuronMask.from_pairs(
        sorted(pairs), mode="keep", layers=tuple(templates.layers), meta=meta
    )


def active_neurons(mask: NeuronMask, architecture: Architecture) -> dict[int, torch.Tensor]:
    """Per layer the mask touches, a (neurons,) 0/1 vector: 1 where a neuron still works.

    The anti-drift parametrization freezes the weights of the zeros."""
    vectors = mask.multipliers(architecture, torch.device("cpu"), torch.float32)
    return {layer: (vec != 0).float() for layer, vec in vectors.items()}


def switched_off(mask: NeuronMask | None, architecture: Architecture) -> int:
    """How many neurons the mask zeroes (lesioned ones, or all but the preserved ones)."""
    if mask is None:
        return 0
    return int(sum((v == 0).sum() for v in active_neurons(mask, architecture).values()))
