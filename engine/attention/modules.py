"""The attention module of every decoder layer of a loaded model, by layer index."""

from __future__ import annotations

from torch import nn

from engine.errors import SubnetScopeError
from engine.models.loading import LoadedModel


def attention_modules(loaded: LoadedModel) -> dict[int, nn.Module]:
    """Layer index → the module that calls the attention function (it carries `layer_idx`)."""
    if not loaded.is_causal_lm:
        raise SubnetScopeError(
            f"{loaded.display_name} is an encoder; the attention view reads decoder models"
        )
    found: dict[int, nn.Module] = {}
    for module in loaded.model.modules():
        layer = getattr(module, "layer_idx", None)
        if not isinstance(layer, int) or not type(module).__name__.endswith("Attention"):
            continue
        if layer in found and found[layer] is not module:
            raise SubnetScopeError(
                f"{loaded.display_name} has two attention modules in layer {layer}; "
                "the attention view reads one per layer"
            )
        found[layer] = module
    if not found:
        raise SubnetScopeError(f"no attention modules found in {loaded.display_name}")
    return dict(sorted(found.items()))


def check_layers(modules: dict[int, nn.Module], layers: list[int]) -> None:
    for layer in layers:
        if layer not in modules:
            raise SubnetScopeError(
                f"layer {layer} is out of range: this model has layers 0-{max(modules)}"
            )
