"""Job params typed by a person (CLI flag, dashboard form): JSON objects, one clear error."""

from __future__ import annotations

import json
from typing import Any

from engine.errors import SubnetScopeError


def parse_params(text: str, *, what: str = "params") -> dict[str, Any]:
    """A JSON object from text; anything else is one readable sentence."""
    try:
        params = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise SubnetScopeError(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(params, dict):
        raise SubnetScopeError(f'{what} must be a JSON object, like {{"seconds": 5}}')
    return params
