"""Run options from job params: one mixin for dataclass configs (help text, from/to params)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from engine.errors import SubnetScopeError


class ParamsConfig:
    """For frozen dataclass configs whose fields carry their help text in `metadata["help"]`."""

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)

    @classmethod
    def from_params(cls, params: dict[str, Any] | None, *, what: str = "params"):
        """The config from a job's params; unknown keys are one clear error."""
        params = dict(params or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise SubnetScopeError(
                f"{what}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"known keys: {', '.join(known)}"
            )
        try:
            return cls(**params)
        except TypeError as exc:
            raise SubnetScopeError(f"{what}: {exc}") from None

    def to_params(self) -> dict[str, Any]:
        return asdict(self)


def whole_numbers(value: object, name: str) -> tuple[int, ...]:
    """One whole number or a list of them (a config field or a JSON param) as a tuple of ints."""
    items = [value] if isinstance(value, int | str) else list(value)  # type: ignore[arg-type]
    try:
        return tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise SubnetScopeError(f"{name} must be whole numbers, not {value!r}") from None
