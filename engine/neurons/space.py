"""A neuron space: the MLP layout that makes (layer, neuron) mean the same thing across artifacts.

Fine-tunes of one base (the demo and its planted-trigger copy, a run's checkpoints, a base with an
adapter) share their layout, so their artifacts join on (layer, neuron); models of another layout
never do.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import SubnetScopeError

if TYPE_CHECKING:
    from engine.models.architectures import Architecture


@dataclass(frozen=True)
class NeuronSpace:
    family: str
    widths: tuple[int, ...]  # neurons of each layer (the down projection's input width)

    @property
    def num_layers(self) -> int:
        return len(self.widths)

    @property
    def total(self) -> int:
        return sum(self.widths)

    def fits(self, widths: object, family: str | None = None) -> bool:
        """Whether an artifact recorded with these widths (and family, if known) lives here."""
        try:
            same = tuple(int(w) for w in widths) == self.widths  # type: ignore[union-attr]
        except TypeError:
            return False
        return same and (not family or family.lower() == self.family.lower())

    def check(self, layer: int, neuron: int) -> None:
        if not 0 <= layer < self.num_layers:
            raise SubnetScopeError(
                f"layer {layer} is out of range: this model has layers 0..{self.num_layers - 1}"
            )
        if not 0 <= neuron < self.widths[layer]:
            raise SubnetScopeError(
                f"neuron {neuron} is out of range: layer {layer} has neurons "
                f"0..{self.widths[layer] - 1}"
            )


@functools.lru_cache(maxsize=32)
def architecture_of(source: str) -> Architecture:
    """A model's architecture from its config alone (meta device: no weights are read)."""
    from engine.lora.adapters import base_shapes

    return base_shapes(str(source))[0]


def space_of(source: str) -> NeuronSpace:
    """The neuron space of a model source, from its config alone (no weights are read)."""
    architecture = architecture_of(str(source))
    return NeuronSpace(architecture.family, tuple(architecture.neurons_per_layer))


def try_space_of(source: str | None) -> NeuronSpace | None:
    """`space_of`, or None where the source cannot be read (a hub id offline, a folder gone)."""
    if not source:
        return None
    try:
        return space_of(source)
    except (SubnetScopeError, OSError, ValueError):
        return None
