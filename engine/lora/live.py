"""Live LoRA: add scale·B@A updates to a shared model for the duration of one call.

`apply_lora` installs forward hooks on the named linear modules that add scale·(x @ Aᵀ) @ Bᵀ to
their output, and removes them when the block ends. Like `engine.models.masks.apply_mask`, it goes
through `engine.models.hooks.scoped_hooks`: the hooks fire only for calls from the context
(thread) that installed them, so a concurrent call on the same shared model never sees them, nested
adapters add up, and the base weights are never written: a slider move is just a new factors dict,
with no reload.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from engine.errors import SubnetScopeError
from engine.lora.lowrank import Factors
from engine.models.hooks import Hook, scoped_hooks
from engine.models.loading import LoadedModel


def linear_shape(module: nn.Module) -> tuple[int, int] | None:
    """(d_out, d_in) of a linear layer: nn.Linear, or GPT-2's Conv1D (weight stored (in, out))."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        d_in, d_out = module.weight.shape
        return int(d_out), int(d_in)
    return None


def resolve_modules(model: nn.Module, paths: list[str]) -> dict[str, nn.Module]:
    """The linear module at each dotted path; one clear error for a path the model lacks."""
    found: dict[str, nn.Module] = {}
    for path in paths:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            raise SubnetScopeError(
                f"the adapter targets module '{path}', which this model does not have"
            ) from None
        if linear_shape(module) is None:
            raise SubnetScopeError(
                f"the adapter targets '{path}', a {type(module).__name__}, not a linear layer"
            )
        found[path] = module
    return found


def check_factors(model: nn.Module, factors: Mapping[str, Factors]) -> dict[str, nn.Module]:
    """Resolve every module of `factors` and check each update's shape against its weight."""
    modules = resolve_modules(model, list(factors))
    for path, module in modules.items():
        shape = linear_shape(module)
        if tuple(factors[path].shape) != shape:
            got = factors[path].shape
            raise SubnetScopeError(
                f"the update for '{path}' is {got[0]}×{got[1]}, but that module's weight is "
                f"{shape[0]}×{shape[1]} (out×in); the adapter was made for another model"
            )
    return modules


@contextmanager
def apply_lora(loaded: LoadedModel, factors: Mapping[str, Factors] | None) -> Iterator[None]:
    """Within this block, calls from this context see W + scale·B@A on each named module."""
    if not factors:
        yield
        return
    modules = check_factors(loaded.model, factors)

    def make_hook(f: Factors, weight: torch.Tensor):
        # Scale folded into B, both cast once to the module's device and dtype.
        b = (f.scale * f.b.to(weight.device, torch.float32)).to(weight.dtype)  # (d_out, r)
        a = f.a.to(weight.device, weight.dtype)  # (r, d_in)

        def hook(module, args, output):
            x = args[0]  # (..., d_in), after any pre-hook (a mask) has run
            return output + (x.to(a.dtype) @ a.T @ b.T).to(output.dtype)  # (..., d_out)

        return hook

    hooks: list[Hook] = [
        (module, "forward", make_hook(factors[path], module.weight))
        for path, module in modules.items()
    ]
    with scoped_hooks(loaded, hooks, name="LoRA"):
        yield


def merged_weight(module: nn.Module, f: Factors) -> torch.Tensor:
    """The weight with the update merged in, in the module's own layout (tests, baselines)."""
    delta = f.dense().to(module.weight.device, torch.float32)  # (d_out, d_in)
    if not isinstance(module, nn.Linear):  # Conv1D keeps (d_in, d_out)
        delta = delta.T
    return (module.weight.float() + delta).to(module.weight.dtype)
