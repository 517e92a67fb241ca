"""One row of the fault suite's table, the registry of scenario modules, and the table printer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Row:
    """One thing tried: what it was, what happened, a figure that measures it, and whether what
    happened is what must happen."""

    area: str  # jobs | tflite | inputs | dashboard ...
    tried: str
    happened: str
    figure: str = ""  # e.g. "max 0.21 s, 38 MB over 10,000 files"
    ok: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


# A scenario gets a fresh scratch folder (its own cache root lives there) and returns its rows.
Scenario = Callable[[Path], Iterable[Row]]

_SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    """Register a scenario under a short name (`python -m faults --only NAME`)."""

    def register(fn: Scenario) -> Scenario:
        _SCENARIOS[name] = fn
        return fn

    return register


def scenarios() -> dict[str, Scenario]:
    return dict(_SCENARIOS)


def markdown(rows: list[Row]) -> str:
    """The table as it lands in the README."""
    lines = ["| area | tried | what happened | figure | |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [r.area, r.tried, r.happened, r.figure, "ok" if r.ok else "**FAIL**"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
