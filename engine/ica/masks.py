"""Lesion and preserve masks from ICA templates, in the templates' neuron space, for one call.

`mlp_neurons` masks multiply the down projection's input (the shared per-call `apply_mask`);
`mlp_out` masks multiply its output, as seed 001's reference `apply_component_masks` multiplies the
MLP output. Either way the hooks hold only for the calling context (engine.models.hooks) and
combine with any other mask or adapter open around them: the shared model is untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch

from engine.errors import SubnetScopeError
from engine.ica.templates import SPACE_LABELS, Templates, check_space, space_widths
from engine.models import LoadedModel, NeuronMask
from engine.models.architectures import Architecture
from engine.models.masks import scaled_down_projection

MaskMode = Literal["lesion", "preserve"]
MASK_MODES: tuple[str, ...] = ("lesion", "preserve")


@dataclass(frozen=True)
class SpaceMask:
    """A NeuronMask whose (layer, index) pairs live in `space` (see engine.ica.templates)."""

    space: str
    mask: NeuronMask

    @property
    def size(self) -> int:
        return self.mask.size

    @property
    def meta(self) -> dict:
        return self.mask.meta

    def validate(self, architecture: Architecture) -> None:
        widths = space_widths(architecture, self.space)
        for layer in set(self.mask.neurons) | set(self.mask.layers or ()):
            if not 0 <= layer < architecture.num_layers:
                raise SubnetScopeError(
                    f"mask names layer {layer}, but the model has layers "
                    f"0..{architecture.num_layers - 1}"
                )
        for layer, channels in self.mask.neurons.items():
            bad = [c for c in channels if not 0 <= c < widths[layer]]
            if bad:
                raise SubnetScopeError(
                    f"mask names channel {bad[0]} of layer {layer}, but the {self.space} space "
                    f"({SPACE_LABELS[self.space]}) has channels 0..{widths[layer] - 1} there"
                )

    def multipliers(
        self, architecture: Architecture, device: torch.device, dtype: torch.dtype
    ) -> dict[int, torch.Tensor]:
        """Per affected layer, the (width,) vector that multiplies the space's activations."""
        if self.space == "mlp_neurons":
            return self.mask.multipliers(architecture, device, dtype)
        self.validate(architecture)
        widths, mask = space_widths(architecture, self.space), self.mask
        out: dict[int, torch.Tensor] = {}
        if mask.mode == "keep":
            layers = mask.layers if mask.layers is not None else range(architecture.num_layers)
            for layer in layers:
                vec = torch.zeros(widths[layer], device=device, dtype=dtype)
                vec[list(mask.neurons.get(layer, ()))] = 1
                out[layer] = vec
            return out
        value = 0.0 if mask.mode == "zero" else mask.factor
        for layer, channels in mask.neurons.items():
            vec = torch.ones(widths[layer], device=device, dtype=dtype)
            vec[list(channels)] = value
            out[layer] = vec
        return out


def ica_mask(templates: Templates, component_ids: Sequence[int], mode: str) -> SpaceMask:
    """lesion: the chosen components' key channels output 0; preserve: every other channel of the
    templates' layers outputs 0 (seed 001's two modes), in the templates' space."""
    if mode not in MASK_MODES:
        raise SubnetScopeError(f"unknown mask mode '{mode}'; use lesion or preserve")
    ids = [int(c) for c in component_ids]
    if not ids:
        raise SubnetScopeError("choose at least one component to lesion or preserve")
    templates.check_components(ids)
    pairs = {pair for c in ids for pair in templates.neurons(c)}
    meta = {"source": "ica", "mode": mode, "components": ids, "space": templates.space}
    if templates.path is not None:
        meta["templates"] = str(templates.path)
    if mode == "lesion":
        mask = NeuronMask.from_pairs(sorted(pairs), mode="zero", meta=meta)
    else:
        mask = NeuronMask.from_pairs(
            sorted(pairs), mode="keep", layers=tuple(templates.layers), meta=meta
        )
    return SpaceMask(templates.space, mask)


@contextmanager
def apply_space_mask(loaded: LoadedModel, mask: SpaceMask | None) -> Iterator[None]:
    """Within this block, calls from this context see the mask in its space; nobody else does."""
    if mask is None:
        yield
        return
    check_space(mask.space)
    if mask.space == "mlp_neurons":
        from engine.models import apply_mask

        with apply_mask(loaded, mask.mask):
            yield
        return
    if mask.mask.mode != "keep" and mask.size == 0:
        yield
        return
    vectors = mask.multipliers(loaded.architecture, loaded.device, loaded.dtype)
    with scaled_down_projection(loaded, vectors, "output", name="ICA mask"):
        yield


def active_neurons(mask: SpaceMask, architecture: Architecture) -> dict[int, torch.Tensor]:
    """Per layer the mask touches, a (width,) 0/1 vector in the mask's space: 1 where a channel
    still works. The anti-drift parametrization freezes the weights of the zeros."""
    vectors = mask.multipliers(architecture, torch.device("cpu"), torch.float32)
    return {layer: (vec != 0).float() for layer, vec in vectors.items()}


def switched_off(mask: SpaceMask | None, architecture: Architecture) -> int:
    """How many channels the mask zeroes (lesioned ones, or all but the preserved ones)."""
    if mask is None:
        return 0
    return int(sum((v == 0).sum() for v in active_neurons(mask, architecture).values()))
