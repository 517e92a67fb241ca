"""Reversible neuron masks: zero, keep-only or scale MLP neurons for the duration of one call.

A neuron is (layer, index) on the input of the layer's MLP down projection. A mask never touches
weights: `apply_mask` installs forward pre-hooks on the down projections through
`engine.models.hooks.scoped_hooks` and removes them when the call ends. The hooks fire only for
calls from the context (thread) that installed them, so a concurrent call on the same shared model
from another browser session never sees them; nested masks combine (their multipliers multiply).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from engine.errors import SubnetScopeError
from engine.models.architectures import Architecture
from engine.models.devices import module_device
from engine.models.hooks import Hook, scoped_hooks
from engine.models.loading import LoadedModel

MaskMode = Literal["zero", "keep", "scale"]
MODES: tuple[str, ...] = ("zero", "keep", "scale")


@dataclass(frozen=True)
class NeuronMask:
    """Which neurons a call alters, and how.

    - zero: the listed neurons output 0.
    - keep: only the listed neurons stay; every other neuron of `layers` (default: all layers)
      outputs 0 — ICA's preserve mode.
    - scale: the listed neurons are multiplied by `factor`.
    """

    mode: MaskMode
    neurons: dict[int, tuple[int, ...]]
    factor: float = 0.0
    layers: tuple[int, ...] | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SubnetScopeError(
                f"unknown mask mode '{self.mode}'; use one of {', '.join(MODES)}"
            )

    @classmethod
    def from_pairs(
        cls, pairs: Iterable[tuple[int, int]], mode: MaskMode = "zero", **kwargs
    ) -> NeuronMask:
        by_layer: dict[int, set[int]] = {}
        for layer, neuron in pairs:
            by_layer.setdefault(int(layer), set()).add(int(neuron))
        neurons = {layer: tuple(sorted(idx)) for layer, idx in sorted(by_layer.items())}
        return cls(mode=mode, neurons=neurons, **kwargs)

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.neurons.values())

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "factor": self.factor,
            "layers": list(self.layers) if self.layers is not None else None,
            "neurons": [
                {"layer": layer, "neuron": n} for layer, ns in self.neurons.items() for n in ns
            ],
            "meta": self.meta,
        }

    def validate(self, architecture: Architecture) -> None:
        """One clear error for a layer or neuron that this model does not have."""
        n_layers = architecture.num_layers
        layers = set(self.neurons) | set(self.layers or ())
        bad_layers = sorted(layer for layer in layers if not 0 <= layer < n_layers)
        if bad_layers:
            raise SubnetScopeError(
                f"mask names layer {bad_layers[0]}, but the model has layers 0..{n_layers - 1}"
            )
        for layer, neurons in self.neurons.items():
            width = architecture.neurons_per_layer[layer]
            bad = [n for n in neurons if not 0 <= n < width]
            if bad:
                raise SubnetScopeError(
                    f"mask names neuron {bad[0]} of layer {layer}, which has neurons 0..{width - 1}"
                )

    def multipliers(
        self, architecture: Architecture, device: torch.device, dtype: torch.dtype
    ) -> dict[int, torch.Tensor]:
        """Per affected layer, the vector (neurons,) that multiplies the down projection's input."""
        self.validate(architecture)
        out: dict[int, torch.Tensor] = {}
        if self.mode == "keep":
            layers = self.layers if self.layers is not None else range(architecture.num_layers)
            for layer in layers:
                vec = torch.zeros(architecture.neurons_per_layer[layer], device=device, dtype=dtype)
                vec[list(self.neurons.get(layer, ()))] = 1
                out[layer] = vec
            return out
        value = 0.0 if self.mode == "zero" else self.factor
        for layer, neurons in self.neurons.items():
            vec = torch.ones(architecture.neurons_per_layer[layer], device=device, dtype=dtype)
            vec[list(neurons)] = value
            out[layer] = vec
        return out


def parse_mask(data: object) -> NeuronMask:
    """A mask from JSON: `{"mode", "neurons": [{"layer", "neuron"}...], "factor", "layers"}`,
    or a bare pruned-neuron list `[{"layer": L, "neuron": i, "score": s}, ...]` (zero mode)."""
    if isinstance(data, list):
        data = {"mode": "zero", "neurons": data}
    if not isinstance(data, dict) or "neurons" not in data:
        raise SubnetScopeError(
            'a mask is {"mode": "zero|keep|scale", "neurons": [{"layer": L, "neuron": i}, ...]} '
            "or a list of such entries"
        )
    try:
        pairs = [(int(e["layer"]), int(e["neuron"])) for e in data["neurons"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SubnetScopeError("each mask entry needs integer 'layer' and 'neuron' fields") from exc
    layers = data.get("layers")
    return NeuronMask.from_pairs(
        pairs,
        mode=data.get("mode", "zero"),
        factor=float(data.get("factor", 0.0)),
        layers=tuple(int(layer) for layer in layers) if layers is not None else None,
        meta=data.get("meta") or {},
    )


def load_mask(path: str | Path) -> NeuronMask:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SubnetScopeError(f"mask file not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise SubnetScopeError(
            f"mask file {path} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from exc
    return parse_mask(data)


@contextmanager
def apply_mask(loaded: LoadedModel, mask: NeuronMask | None) -> Iterator[None]:
    """Within this block, calls made from this context see the mask; nobody else does."""
    if mask is None or (mask.mode != "keep" and mask.size == 0):
        yield
        return
    vectors = mask.multipliers(loaded.architecture, loaded.device, loaded.dtype)
    with scaled_down_projection(loaded, vectors, "input"):
        yield


@contextmanager
def scaled_down_projection(
    loaded: LoadedModel, vectors: dict[int, torch.Tensor], side: str, *, name: str = "mask"
) -> Iterator[None]:
    """Multiply each layer's down projection input (`side="input"`, its neurons) or output
    (`"output"`, hidden-size channels) by `vectors[layer]`, for calls made from this context only.
    Nested calls combine: their vectors multiply."""

    def input_hook(vec: torch.Tensor):
        def hook(module, args):
            hidden = args[0]  # (..., neurons)
            return (hidden * vec.to(hidden.device, hidden.dtype), *args[1:])

        return hook

    def output_hook(vec: torch.Tensor):
        def hook(module, args, output):
            return output * vec.to(output.device, output.dtype)  # (..., hidden)

        return hook

    hooks: list[Hook] = []
    for layer, vec in vectors.items():
        module = loaded.architecture.down_module(loaded.model, layer)
        # Moved once to the layer's own device (device_map="auto" spreads layers over GPUs).
        vec = vec.to(module_device(module))
        if side == "input":
            hooks.append((module, "pre", input_hook(vec)))
        else:
            hooks.append((module, "forward", output_hook(vec)))
    with scoped_hooks(loaded, hooks, name=name):
        yield


# A typed spec names at most this many neurons when the model's count is not given: ranges are
# counted before they are expanded, so `0:0-999999999` is refused, not built (issue 15).
MAX_SPEC_NEURONS = 1_000_000


def parse_neuron_spec(text: str, *, max_neurons: int | None = None) -> list[tuple[int, int]]:
    """Neurons typed by hand: `"3:17 3:20-25, 5:100"` → [(3, 17), (3, 20), …, (5, 100)].

    `max_neurons` (the model's neuron count, when known) bounds how many the spec may name, else
    MAX_SPEC_NEURONS does; the count is checked before any range is expanded."""
    cap = min(max_neurons, MAX_SPEC_NEURONS) if max_neurons else MAX_SPEC_NEURONS
    ranges: list[tuple[int, int, int]] = []
    count = 0
    for item in text.replace(",", " ").split():
        layer, sep, neurons = item.partition(":")
        try:
            if not sep:
                raise ValueError
            first, _, last = neurons.partition("-")
            start, stop = int(first), int(last or first)
            ranges.append((int(layer), start, stop))
        except ValueError as exc:
            raise SubnetScopeError(
                f"cannot read {item[:40]!r}: write neurons as layer:neuron or layer:first-last"
            ) from exc
        if stop < start:
            raise SubnetScopeError(f"{item[:40]!r} runs backwards: write layer:first-last")
        count += stop - start + 1
        if count > cap:
            most = (
                f"the model's {cap:,} neurons"
                if cap == max_neurons
                else f"{cap:,} neurons, the most one list may name"
            )
            raise SubnetScopeError(f"{item[:40]!r} takes the neuron list past {most}")
    return [(layer, n) for layer, start, stop in ranges for n in range(start, stop + 1)]
