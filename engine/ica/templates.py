"""Key neurons per component, and templates in seed 001's JSON layout plus metadata.

File layout (`templates.json`):

    {"format": "subnetscope.ica-templates", "version": 1,
     "metadata": {"model": ..., "layers": [...], "neurons_per_layer": [...], "datasets": [...],
                  "samples_per_dataset": ..., "components": ..., "percentile": ..., ...},
     "templates": {"0": {"3": [17, 250, ...], ...}, ...}}      # {component_id: {layer: [channels]}}

A bare seed-001 file (just the `templates` mapping) loads too; it then cannot be checked against a
model's family. The arrays behind a template (mixing maps, per-token sources, captured texts) sit
beside it in `<stem>.arrays.safetensors` and `<stem>.texts.json` (engine.ica.artifacts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.atomic import write_json_atomic
from engine.errors import SubnetScopeError
from engine.models.architectures import Architecture

FORMAT = "subnetscope.ica-templates"
VERSION = 1
THRESHOLDS = ("percentile", "zscore")
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
        return {
            "format": FORMAT,
            "version": VERSION,
            "metadata": self.metadata,
            "templates": {
                str(c): {str(layer): list(map(int, ns)) for layer, ns in sorted(layers.items())}
                for c, layers in sorted(self.components.items())
            },
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_json_atomic(path, self.to_json())
        self.path = path
        return path

    def validate(self, architecture: Architecture, model_name: str = "this model") -> None:
        """One clear error when these templates cannot address `architecture`'s neurons."""
        meta = self.metadata
        family = meta.get("family")
        if family and family != architecture.family:
            raise SubnetScopeError(
                f"these templates were built on a {family} model ({meta.get('model', '?')}); "
                f"{model_name} is {architecture.family}"
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
                width = architecture.neurons_per_layer[layer]
                bad = [c for c in channels if not 0 <= c < width]
                if bad:
                    raise SubnetScopeError(
                        f"component {component} names channel {bad[0]} of layer {layer}, which "
                        f"has channels 0..{width - 1} in {model_name}"
                    )


def _widths(widths: Sequence[int]) -> str:
    distinct = sorted(set(widths))
    return str(distinct[0]) if len(distinct) == 1 else f"{distinct[0]}–{distinct[-1]}"


def _ranges(ids: Sequence[int]) -> str:
    from engine.ica.layers import format_layers

    return format_layers(ids).replace(",", ", ") if ids else "none"


def _int_key(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SubnetScopeError(f"template {what} '{value}' is not an integer") from None


def parse_templates(data: Any, path: Path | None = None) -> Templates:
    """Templates from their JSON (ours, or a bare seed-001 `{component: {layer: [...]}}`)."""
    where = f"'{path}'" if path else "the templates"
    if not isinstance(data, dict):
        raise SubnetScopeError(f"{where} must be a JSON object of {{component: {{layer: [...]}}}}")
    if "templates" in data:
        if data.get("format", FORMAT) != FORMAT:
            raise SubnetScopeError(f"{where} is a '{data.get('format')}' file, not ICA templates")
        version = data.get("version", VERSION)
        if version != VERSION:
            raise SubnetScopeError(
                f"{where} has version {version}; this SubnetScope reads version {VERSION}"
            )
        metadata, body = data.get("metadata") or {}, data["templates"]
    else:
        metadata, body = {}, data
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
    return Templates(components=components, metadata=metadata, path=path)


def load_templates(path: str | Path) -> Templates:
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "templates.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubnetScopeError(f"no ICA templates at '{path}'") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SubnetScopeError(f"'{path}' is not valid JSON ({exc})") from None
    return parse_templates(data, path)


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
