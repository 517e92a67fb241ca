"""Layer selections as users type them: `"all"`, `"0-5"`, `"0,2,4"`, `"0-3,8"` or a list."""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import SubnetScopeError


def parse_layers(spec: str | Sequence[int] | None, num_layers: int) -> tuple[int, ...]:
    """Sorted, distinct layer indices in 0..num_layers-1 (seed 001's `ica_layers`)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return tuple(range(num_layers))
    layers: set[int] = set()
    if isinstance(spec, str):
        for item in spec.replace(" ", "").strip("[]").split(","):
            if not item:
                continue
            first, _, last = item.partition("-")
            try:
                start, stop = int(first), int(last or first)
            except ValueError:
                raise SubnetScopeError(
                    f"cannot read layers '{spec}': write 'all', '0-5', '0,2,4' or '0-3,8'"
                ) from None
            if stop < start:
                raise SubnetScopeError(f"layer range '{item}' runs backwards")
            layers.update(range(start, stop + 1))
    else:
        try:
            layers = {int(layer) for layer in spec}
        except (TypeError, ValueError):
            raise SubnetScopeError(f"layers must be integers, not {list(spec)!r}") from None
    bad = sorted(layer for layer in layers if not 0 <= layer < num_layers)
    if bad:
        raise SubnetScopeError(
            f"layer {bad[0]} does not exist: the model has layers 0..{num_layers - 1}"
        )
    if not layers:
        raise SubnetScopeError(f"no layers selected by '{spec}'")
    return tuple(sorted(layers))


def format_layers(layers: Sequence[int]) -> str:
    """The inverse of parse_layers for display: (0, 1, 2, 5) → '0-2,5'."""
    parts, run = [], []
    for layer in sorted(layers):
        if run and layer == run[-1] + 1:
            run.append(layer)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [layer]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)
