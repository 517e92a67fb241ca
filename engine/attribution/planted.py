"""Known answers for attribution: a named model source may list the neurons planted in it.

A model folder with `planted.json` (the demo's `demo-toxic`, engine/demo/planted.py) says which
MLP neurons were trained to carry a behaviour; SparC3 and the causal check report precision and
recall against them.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import SubnetScopeError
from engine.models.sources import named_source

PLANTED = "planted.json"


def planted_neurons(folder: str | Path) -> list[tuple[int, int]]:
    data = json.loads((Path(folder) / PLANTED).read_text())
    return [(int(e["layer"]), int(e["neuron"])) for e in data["neurons"]]


def planted_of(model: str) -> list[tuple[int, int]]:
    """The neurons planted in the named source `model`; [] for other models."""
    named = named_source(model)
    if named is None:
        return []
    if not named.ready():
        raise SubnetScopeError(named.missing)
    folder = named.path()
    return planted_neurons(folder) if (folder / PLANTED).is_file() else []
