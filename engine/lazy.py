"""Lazy exports for area packages, so that importing one light submodule stays light.

An area's `__init__` lists its public names by submodule (`__all__ = attach(__name__, {...})`);
each is imported on first use, as Scientific Python's SPEC 1 (`lazy_loader`) does. This is what
lets `engine.<area>.jobs`, the configs and the demo registry load without torch or transformers,
while `from engine.models import load_model` keeps working.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Mapping, Sequence


class _LazyPackage(types.ModuleType):
    _exports: dict[str, str]  # public name -> the submodule that defines it

    def __getattr__(self, name: str) -> object:  # called only for names not yet set
        home = self._exports.get(name)
        if home is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        super().__setattr__(name, value)
        return value

    def __setattr__(self, name: str, value: object) -> None:
        # The import system sets each imported submodule on its package. Where the package exports
        # a function of the same name (`engine.sparsity.diff`), the function wins, as it did when
        # the package imported its names eagerly.
        if isinstance(value, types.ModuleType) and name in self._exports:
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._exports})


def attach(package: str, exports: Mapping[str, Sequence[str]]) -> list[str]:
    """Make `package` load `{submodule: names}` on first use; returns its `__all__`."""
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    object.__setattr__(
        module,
        "_exports",
        {
            name: sub if sub.startswith("engine.") else f"{package}.{sub}"
            for sub, names in exports.items()
            for name in names
        },
    )
    return sorted(module._exports)
