"""Model sources by name beyond `demo` (such as the demo's planted `demo-toxic`), filled by plugins.

The area that builds such a model sits above this one, so it registers the name here and
`engine.areas.load_plugins()` imports the registering modules by name on the first lookup:
`load_model("demo-toxic")` works from any caller without an import arrow pointing up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.areas import load_plugins

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class NamedSource:
    name: str  # what load_model takes
    label: str  # what a model picker shows
    path: Callable[[], Path]  # the model folder, built or not
    ready: Callable[[], bool]
    build: Callable[[Progress], Path]  # builds the folder if it is missing (one builder at a time)
    missing: str  # the error when it is loaded before it is built


_SOURCES: dict[str, NamedSource] = {}


def register_source(source: NamedSource) -> NamedSource:
    _SOURCES[source.name] = source
    return source


def named_sources() -> dict[str, NamedSource]:
    load_plugins()
    return dict(_SOURCES)


def named_source(name: str) -> NamedSource | None:
    return named_sources().get(name)
