"""Opening a weight source from what a user gives: 'demo', a folder, a file, an adapter, a hub id.

Above both kinds of source (engine.sparsity.sources, engine.sparsity.lora): an adapter merges onto
a base opened here, so the dispatch lives in neither.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import SubnetScopeError
from engine.sparsity.lora import LoraMergedSource
from engine.sparsity.sources import (
    ADAPTER_CONFIG,
    SafetensorsSource,
    WeightSource,
    _folder_source,
    _hub_folder,
)


def is_adapter(path: Path) -> bool:
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file()


def open_source(
    spec: str | Path | WeightSource, *, base: str | Path | WeightSource | None = None
) -> WeightSource:
    """A source from 'demo', a model folder, a .safetensors file, a PEFT adapter folder (merged
    onto `base`, else onto the base its config names) or a hub id (online, or in the hub cache)."""
    if not isinstance(spec, str | Path):
        return spec
    text = str(spec)
    if text == "demo":
        from engine.models import ensure_demo_model

        return _folder_source(ensure_demo_model(), "demo")
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix != ".safetensors":
            raise SubnetScopeError(f"'{text}' is a file but not a .safetensors file")
        config_dir = path.parent if (path.parent / "config.json").is_file() else None
        return SafetensorsSource(text, [path], config_dir)
    if path.is_dir():
        if is_adapter(path):
            return LoraMergedSource.open(path, base=base, open_base=open_source)
        return _folder_source(path, text)
    from engine.models.loading import is_hub_id

    if not is_hub_id(text):
        raise SubnetScopeError(f"no model at '{text}': no such file or folder")
    folder = _hub_folder(text)
    if is_adapter(folder):
        return LoraMergedSource.open(folder, base=base, label=text, open_base=open_source)
    return _folder_source(folder, text)
