"""Names a user gives to what the workspace saves (a pruned model, a blend): one plain folder name
inside the cache, never a path (issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

from engine.errors import SubnetScopeError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_name(name: str, what: str = "name") -> str:
    """`name` itself when it is a plain folder name; else one clear error (shown, not raised, in
    the dashboard). No slash, no leading dot, no control character, nothing outside ASCII."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = repr(name[:40] + ("…" if len(name) > 40 else "")) if isinstance(name, str) else name
        raise SubnetScopeError(f"{shown} is not a valid {what}: use {NAME_RULE}")
    return name


def named_folder(parent: Path, name: str, what: str = "folder name") -> Path:
    """The folder `name` directly inside `parent`, after check_name."""
    return Path(parent) / check_name(name, what)


def percent(share: float) -> str:
    """A share in [0, 1] as a percentage that never rounds a change away: 12.3%, 0.049%,
    4.0e-07%; exactly 0 is "0%"."""
    value = 100 * share
    if value == 0:
        return "0%"
    if abs(value) >= 0.1:
        return f"{value:.1f}%"
    if abs(value) >= 1e-4:
        return f"{value:.2g}%"
    return f"{value:.1e}%"
