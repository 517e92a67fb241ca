"""Key neurons per component, and templates in seed 001's JSON layout plus metadata.

Every templates file lives in one neuron space (`SPACES`):

- `mlp_out`: the MLP output channels (the down projection's output, hidden-size wide per layer),
  what seed 001's reference (`compute_global_networks`) hooks and masks;
- `mlp_neurons`: the intermediate neurons (the down projection's input), SubnetScope's default,
  the space SparC3, the neuron passport and the sparsity views share.

File layout (`templates.json`):

    {"format": "subnetscope.ica-templates", "version": 1,
     "metadata": {"space": "mlp_neurons", "model": ..., "layers": [...],
                  "neurons_per_layer": [...], "widths": [...], "datasets": [...], ...},
     "layout": {"captured_layers_sorted": [...], "hidden_size": 576},   # mlp_out files only
     "templates": {"0": {"3": [17, 250, ...], ...}, ...}}      # {component_id: {layer: [channels]}}

A seed-001 `global_templates.json` (`{"name", "layout": {"captured_layers_sorted",
"hidden_size"}, "templates"}`) loads in the `mlp_out` space; our `mlp_out` files carry the same
`layout` block, so the seed's loader reads them too. A bare `{component: {layer: [...]}}` mapping
declares no space: it takes the one the caller asks for (default `mlp_neurons`). Asking for a space
other than the file's is an error. The arrays behind a template (mixing maps, per-token sources,
captured texts) sit beside it in `<stem>.arrays.safetensors` and `<stem>.texts.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.atomic import write_json_atomic
from engine.errors import SubnetScopeError

if TYPE_CHECKING:
    from engine.models.architectures import Architecture

FORMAT = "subnetscope.ica-templates"
VERSION = 1
THRESHOLDS = ("percentile", "zscore")
SPACES = ("mlp_neurons", "mlp_out")
DEFAULT_SPACE = "mlp_neurons"
SEED_SPACE = "mlp_out"  # seed 001's reference: forward hook on the MLP / down projection output
SPACE_LABELS = {
    "mlp_neurons": "intermediate neurons (down projection input)",
    "mlp_out": "MLP output channels (down projection output, hidden size; seed 001's reference)",
}


def check_space(space: str) -> str:
    if space not in SPACES:
        raise SubnetScopeError(f"unknown neuron space '{space}'; use one of {', '.join(SPACES)}")
    return space


def space_widths(architecture: Architecture, space: str) -> tuple[int, ...]:
    """Width of every layer in `space`: its intermediate neurons, or the hidden size."""
    if check_space(space) == "mlp_out":
        return (int(architecture.hidden_size),) * architecture.num_layers
    return tuple(int(w) for w in architecture.neurons_per_layer)


Z_CRITICAL = 1.96  # two-sided 5 % for a standard normal: the issue's |z| > 1.96 rule


def key_features(
    weights: np.ndarray, *, threshold: str = "percentile", percentile: float = 95.0
) -> np.ndarray:
    """Flat feature indices whose |weight| passes the rule, sorted.

    - percentile: |w| ≥ the `percentile`-th percentile of |w| (seed 001, default 95 → top 5 %)
    - zscore: |(w − mean) / std| > 1.96
    """
    w = np.asarray(weights, dtype=np.float64)
    if threshold == "percentile":
        if not 0 <= percentile < 100:
            raise SubnetScopeError(f"percentile must be in [0, 100), not {percentile}")
        magnitude = np.abs(w)
        return np.flatnonzero(magnitude >= np.percentile(magnitude, percentile))
    if threshold == "zscore":
        std = w.std()
        if std == 0:
            return np.array([], dtype=np.int64)
        return np.flatnonzero(np.abs((w - w.mean()) / std) > Z_CRITICAL)
    raise SubnetScopeError(f"unknown threshold '{threshold}'; use one of {', '.join(THRESHOLDS)}")


@dataclass
class Templates:
    """Key neurons of each component: {component: {layer: sorted channels}}, plus metadata."""

    components: dict[int, dict[int, list[int]]]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def component_ids(self) -> list[int]:
        return sorted(self.components)

    @property
    def space(self) -> str:
        """The neuron space the channel numbers live in (files without one: `mlp_neurons`)."""
        return str(self.metadata.get("space") or DEFAULT_SPACE)

    def layer_widths(self) -> list[int] | None:
        """Width of every model layer in this file's space (index = layer), if recorded."""
        if self.space == "mlp_out":
            hidden = self.metadata.get("hidden_size")
            count = self.metadata.get("num_layers") or (max(self.layers) + 1 if self.layers else 0)
            return [int(hidden)] * int(count) if hidden else None
        widths = self.metadata.get("neurons_per_layer")
        return [int(w) for w in widths] if widths else None

    @property
    def layers(self) -> list[int]:
        """The layers the decomposition covered (metadata), else those holding key neurons."""
        if self.metadata.get("layers"):
            return [int(layer) for layer in self.metadata["layers"]]
        return sorted({layer for comp in self.components.values() for layer in comp})

    def neurons(self, component: int) -> list[tuple[int, int]]:
        self.check_components([component])
        return [(layer, n) for layer, ns in sorted(self.components[component].items()) for n in ns]

    def size(self, component: int) -> int:
        return sum(len(ns) for ns in self.components[component].values())

    def check_components(self, ids: Sequence[int]) -> None:
        missing = [int(c) for c in ids if int(c) not in self.components]
        if missing:
            raise SubnetScopeError(
                f"component {missing[0]} is not in these templates; they hold components "
                f"{_ranges(self.component_ids)}"
            )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "metadata": {**self.metadata, "space": self.space},
        }
        if self.space == "mlp_out" and self.metadata.get("hidden_size"):
            # seed 001's own loader reads this block (ICAMask.load_templates / matching)
            out["layout"] = {
                "captured_layers_sorted": list(self.layers),
                "hidden_size": int(self.metadata["hidden_size"]),
            }
        out["templates"] = {
            str(c): {str(layer): list(map(int, ns)) for layer, ns in sorted(layers.items())}
            for c, layers in sorted(self.components.items())
        }
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_json_atomic(path, self.to_json())
        self.path = path
        return path

    def check_space(self, space: str | None) -> None:
        """An error when the caller needs another space than the file's."""
        if space is None or check_space(space) == self.space:
            return
        where = f"'{self.path}'" if self.path else "these templates"
        raise SubnetScopeError(
            f"{where} hold {self.space} channels ({SPACE_LABELS[self.space]}), but "
            f"{space} ({SPACE_LABELS[space]}) was asked for: the channel numbers of one space "
            "mean other units in the other"
        )

    def validate(
        self, architecture: Architecture, model_name: str = "this model", space: str | None = None
    ) -> None:
        """One clear error when these templates cannot address `architecture`'s channels in
        their space (or are not in `space`, when given)."""
        self.check_space(space)
        meta = self.metadata
        family = meta.get("family")
        if family and family != architecture.family:
            raise SubnetScopeError(
                f"these templates were built on a {family} model ({meta.get('model', '?')}); "
                f"{model_name} is {architecture.family}"
            )
        hidden = meta.get("hidden_size")
        if self.space == "mlp_out" and hidden and int(hidden) != architecture.hidden_size:
            raise SubnetScopeError(
                f"these mlp_out templates address {hidden} MLP output channels per layer "
                f"(hidden size); {model_name} has hidden size {architecture.hidden_size}"
            )
        widths = meta.get("neurons_per_layer")
        if widths and list(widths) != list(architecture.neurons_per_layer):
            raise SubnetScopeError(
                f"these templates were built on a model with {len(widths)} layers × "
                f"{_widths(widths)} neurons ({meta.get('model', '?')}); {model_name} has "
                f"{architecture.num_layers} layers × {_widths(architecture.neurons_per_layer)}"
            )
        for component, layers in self.components.items():
            for layer, channels in layers.items():
                if not 0 <= layer < architecture.num_layers:
                    raise SubnetScopeError(
                        f"component {component} names layer {layer}, but {model_name} has "
                        f"layers 0..{architecture.num_layers - 1}"
                    )
                width = space_widths(architecture, self.space)[layer]
                bad = [c for c in channels if not 0 <= c < width]
                if bad:
                    raise SubnetScopeError(
                        f"component {component} names channel {bad[0]} of layer {layer}, but "
                        f"the {self.space} space ({SPACE_LABELS[self.space]}) has channels "
                        f"0..{width - 1} there in {model_name}: are these templates in "
                        "another space?"
                    )


def _widths(widths: Sequence[int]) -> str:
    distinct = sorted(set(widths))
    return str(distinct[0]) if len(distinct) == 1 else f"{distinct[0]}–{distinct[-1]}"


def _ranges(ids: Sequence[int]) -> str:
    from engine.models.layers import format_layers

    return format_layers(ids).replace(",", ", ") if ids else "none"


def _int_key(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SubnetScopeError(f"template {what} '{value}' is not an integer") from None


def _seed_layout(data: dict, where: str) -> dict[str, Any]:
    """Metadata from a seed-001 `global_templates.json` layout block (the mlp_out space)."""
    layout = data["layout"]
    try:
        layers = [int(layer) for layer in layout["captured_layers_sorted"]]
        hidden = int(layout["hidden_size"])
    except (KeyError, TypeError, ValueError):
        raise SubnetScopeError(
            f"{where} has a 'layout' block without integer 'captured_layers_sorted' and "
            "'hidden_size' (seed 001's global_templates.json layout)"
        ) from None
    return {
        "space": SEED_SPACE,
        "layers": layers,
        "hidden_size": hidden,
        "name": data.get("name"),
        "source_format": "seed-001 global_templates.json",
    }


def parse_templates(data: Any, path: Path | None = None, space: str | None = None) -> Templates:
    """Templates from their JSON: ours, seed 001's `global_templates.json` (space mlp_out), or a
    bare `{component: {layer: [...]}}` (the space asked for, default mlp_neurons). `space`, when
    given, must be the file's."""
    where = f"'{path}'" if path else "the templates"
    if space is not None:
        check_space(space)
    if not isinstance(data, dict):
        raise SubnetScopeError(f"{where} must be a JSON object of {{component: {{layer: [...]}}}}")
    if "layout" in data and "format" not in data and "templates" in data:
        metadata, body = _seed_layout(data, where), data["templates"]
    elif "templates" in data:
        if data.get("format", FORMAT) != FORMAT:
            raise SubnetScopeError(f"{where} is a '{data.get('format')}' file, not ICA templates")
        version = data.get("version", VERSION)
        if version != VERSION:
            raise SubnetScopeError(
                f"{where} has version {version}; this SubnetScope reads version {VERSION}"
            )
        metadata, body = dict(data.get("metadata") or {}), data["templates"]
        metadata.setdefault("space", DEFAULT_SPACE)  # files from before spaces were recorded
        check_space(metadata["space"])
    else:
        metadata, body = ({"space": space} if space else {}), data
    if not isinstance(body, dict) or not body:
        raise SubnetScopeError(f"{where} hold no components")
    components: dict[int, dict[int, list[int]]] = {}
    for comp, layers in body.items():
        if not isinstance(layers, dict):
            raise SubnetScopeError(
                f"component {comp} in {where} must map layer → [channels], "
                f"not {type(layers).__name__}"
            )
        parsed: dict[int, list[int]] = {}
        for layer, channels in layers.items():
            if not isinstance(channels, list):
                raise SubnetScopeError(f"component {comp}, layer {layer}: channels must be a list")
            parsed[_int_key(layer, "layer")] = sorted(
                {_int_key(c, f"channel of component {comp}") for c in channels}
            )
        components[_int_key(comp, "component id")] = parsed
    templates = Templates(components=components, metadata=metadata, path=path)
    if templates.space == "mlp_out" and metadata.get("hidden_size"):
        _check_channels(templates, int(metadata["hidden_size"]), where)
    templates.check_space(space)
    return templates


def _check_channels(templates: Templates, hidden: int, where: str) -> None:
    for component, layers in templates.components.items():
        for layer, channels in layers.items():
            if channels and not 0 <= channels[0] <= channels[-1] < hidden:
                raise SubnetScopeError(
                    f"component {component} of {where} names channel {channels[-1]} of layer "
                    f"{layer}, beyond the mlp_out layout's hidden size {hidden}"
                )


def load_templates(path: str | Path, space: str | None = None) -> Templates:
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "templates.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubnetScopeError(f"no ICA templates at '{path}'") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SubnetScopeError(f"'{path}' is not valid JSON ({exc})") from None
    return parse_templates(data, path, space)


def templates_from_mixing(
    mixing: np.ndarray,
    layers: Sequence[int],
    widths: Sequence[int],
    *,
    threshold: str = "percentile",
    percentile: float = 95.0,
    metadata: dict[str, Any] | None = None,
) -> Templates:
    """Key neurons of each mixing column (features, k), mapped back to (layer, channel)."""
    offsets = np.concatenate([[0], np.cumsum(widths)])
    if mixing.shape[0] != offsets[-1]:
        raise SubnetScopeError(
            f"mixing has {mixing.shape[0]} rows but the layers hold {offsets[-1]} neurons"
        )
    components: dict[int, dict[int, list[int]]] = {}
    for c in range(mixing.shape[1]):
        flat = key_features(mixing[:, c], threshold=threshold, percentile=percentile)
        slot = np.searchsorted(offsets, flat, side="right") - 1
        by_layer: dict[int, list[int]] = {}
        for s, f in zip(slot.tolist(), flat.tolist(), strict=True):
            by_layer.setdefault(int(layers[s]), []).append(int(f - offsets[s]))
        components[c] = by_layer
    return Templates(components=components, metadata=dict(metadata or {}))
