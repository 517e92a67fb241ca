"""Anti-drift row parametrization: masked MLP channels keep their exact weights as the rest train.

In the `mlp_neurons` space a masked neuron's up/gate rows and down column are held; in the
`mlp_out` space (seed 001's reference masks the MLP output) a masked output channel's down rows
and down bias entry are held: the reference's `W_eff = frozen + row_mask * delta` on down_proj.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from engine.errors import SubnetScopeError
from engine.ica.templates import DEFAULT_SPACE, space_widths
from engine.models.architectures import Architecture

APPLY_TO = ("auto", "lora", "base", "both")


class RowMaskedDelta(nn.Module):
    """The parametrization W_eff = frozen + mask * delta, whose parameter is the delta from frozen.

    `mask` (bool, broadcastable to the weight) is True where the weight trains. Masked entries are
    taken from `frozen` by `torch.where`, so they stay bit-identical to it whatever the optimizer
    does to the delta (momentum, weight decay, even a NaN).
    """

    def __init__(self, frozen: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("frozen", frozen.detach().clone(), persistent=False)
        self.register_buffer("mask", mask.detach().to(torch.bool), persistent=False)

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, self.frozen + delta, self.frozen)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, weight - self.frozen, torch.zeros_like(weight))

    def drift(self, effective: torch.Tensor) -> float:
        """The largest distance of a masked entry of `effective` from its frozen value."""
        held = ~self.mask.expand_as(effective)
        if not bool(held.any()):
            return 0.0
        return float((effective - self.frozen).abs()[held].max())


@dataclass(frozen=True)
class AntiDriftReport:
    """What `apply_anti_drift` parametrized (names relative to the base model) and how many
    neurons of the given layers are held (`frozen_neurons`) or train (`trainable_neurons`)."""

    parametrized: list[str]
    frozen_neurons: int
    trainable_neurons: int


@dataclass(frozen=True)
class _Target:
    name: str
    owner: nn.Module
    attr: str
    axis: int  # the neuron axis of the tensor
    layer: int
    zero_masked: bool = False  # LoRA factors: hold masked entries at 0, not at their init


def _base_model(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _is_lora(module: nn.Module) -> bool:
    lora_a = getattr(module, "lora_A", None)
    return isinstance(lora_a, nn.ModuleDict) and len(lora_a) > 0


def _check_masks(architecture: Architecture, active: dict[int, torch.Tensor], space: str) -> None:
    widths = space_widths(architecture, space)
    for layer, mask in active.items():
        if not isinstance(layer, int) or not 0 <= layer < architecture.num_layers:
            raise SubnetScopeError(
                f"anti-drift layer {layer!r} is not a layer index between 0 and "
                f"{architecture.num_layers - 1}"
            )
        width = widths[layer]
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (width,):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise SubnetScopeError(
                f"the anti-drift mask of layer {layer} must be a ({width},) tensor, got {shape}"
            )
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise SubnetScopeError(
                f"the anti-drift mask of layer {layer} must hold only 0 (frozen) and 1 (trains)"
            )


def _mlp_modules(base: nn.Module, architecture: Architecture, layer: int, space: str):
    """(name, module, role) of the layer's MLP projections whose weights carry the space's
    channels; role 'out' = the channels are its outputs."""
    block = architecture.blocks[layer]
    if space == "mlp_out":
        roles = ((block.down, "out"),)
    else:
        roles = ((block.up, "out"), (block.gate, "out"), (block.down, "in"))
    for name, role in roles:
        if name is None:
            continue
        # The fallback rule run on a PEFT model finds the Linear inside the LoRA layer.
        parent = name.removesuffix(".base_layer")
        if parent != name and _is_lora(base.get_submodule(parent)):
            name = parent
        yield name, base.get_submodule(name), role


def _base_targets(name: str, module: nn.Module, role: str, layer: int, transposed: bool):
    owner_name, owner = name, module
    if _is_lora(module):
        owner_name, owner = f"{name}.base_layer", module.get_base_layer()
    # nn.Linear weight is (out, in); GPT-2's Conv1D is (in, out).
    axis = (0 if role == "out" else 1) ^ int(transposed)
    targets = [_Target(f"{owner_name}.weight", owner, "weight", axis, layer)]
    # An up/gate bias is per neuron, and a down bias per output channel (role 'out' in mlp_out);
    # in mlp_neurons the down bias is per hidden unit, shared by all neurons.
    if role == "out" and isinstance(getattr(owner, "bias", None), torch.Tensor):
        targets.append(_Target(f"{owner_name}.bias", owner, "bias", 0, layer))
    return targets


def _lora_targets(name: str, module: nn.Module, role: str, layer: int):
    if getattr(module, "merged", False):
        raise SubnetScopeError(
            f"the LoRA adapter of {name} is merged into its base weight; unmerge it before "
            "applying anti-drift"
        )
    variants = getattr(module, "lora_variant", {}) or {}
    dora = getattr(module, "use_dora", {}) or {}
    targets = []
    for adapter in module.lora_A:
        if adapter in variants or dora.get(adapter):
            raise SubnetScopeError(
                f"anti-drift supports plain LoRA only, but adapter '{adapter}' of {name} is a "
                "LoRA variant such as DoRA"
            )
        # peft keeps lora_A (r, in) and lora_B (out, r) for Conv1D too (fan_in_fan_out).
        if role == "out":
            lora_b = module.lora_B[adapter]
            targets.append(
                _Target(f"{name}.lora_B.{adapter}.weight", lora_b, "weight", 0, layer, True)
            )
            if isinstance(getattr(lora_b, "bias", None), torch.Tensor):
                targets.append(
                    _Target(f"{name}.lora_B.{adapter}.bias", lora_b, "bias", 0, layer, True)
                )
        else:
            lora_a = module.lora_A[adapter]
            targets.append(
                _Target(f"{name}.lora_A.{adapter}.weight", lora_a, "weight", 1, layer, True)
            )
    return targets


def _lora_slice_is_zero(module: nn.Module, role: str, held: torch.Tensor) -> bool:
    """Whether every adapter adds exactly nothing to the held neurons (B·A's neuron slice is 0)."""
    with torch.no_grad():
        for adapter in module.lora_A:
            held = held.to(module.lora_A[adapter].weight.device)
            a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
            delta = b[held] @ a if role == "out" else b @ a[:, held]
            if bool(delta.any()):
                return False
            bias = getattr(module.lora_B[adapter], "bias", None)
            if role == "out" and isinstance(bias, torch.Tensor) and bool(bias[held].any()):
                return False
    return True


def _broadcast(mask: torch.Tensor, tensor: torch.Tensor, axis: int) -> torch.Tensor:
    shape = [1] * tensor.dim()
    shape[axis] = -1
    return mask.to(device=tensor.device, dtype=torch.bool).reshape(shape)


def apply_anti_drift(
    model: nn.Module,
    architecture: Architecture,
    active: dict[int, torch.Tensor],
    apply_to: str = "auto",
    space: str = DEFAULT_SPACE,
) -> AntiDriftReport:
    """Parametrize the MLP tensors of the layers in `active` so their masked neurons cannot move.

    `active[layer]` is a (neurons,) 0/1 tensor, 1 where the neuron trains. `architecture` is that of
    the base model (for PEFT, `model.get_base_model()`). `apply_to` picks the tensors: "base"
    (up/gate rows and bias, down columns), "lora" (LoRA B rows of up/gate, LoRA A columns of down),
    "both", or "auto" ("lora" if those modules carry LoRA, else "base"); "lora" also holds base
    tensors of those modules that train. In LoRA mode the masked factor entries are held at 0,
    which is what a fresh adapter (B = 0) adds to those neurons: holding down's A column at its
    random init would let the trained B move the neuron. Call it before the optimizer is built;
    layers whose neurons all train are left alone. `space` says what `active` indexes: the
    intermediate neurons (`mlp_neurons`) or the down projection's output channels (`mlp_out`, whose
    down rows, down bias entries and down LoRA B rows are held).
    """
    if apply_to not in APPLY_TO:
        raise SubnetScopeError(
            f"unknown anti-drift target '{apply_to}'; choose one of {', '.join(APPLY_TO)}"
        )
    _check_masks(architecture, active, space)
    widths = space_widths(architecture, space)
    base = _base_model(model)
    layers = sorted(active)
    modules = [
        (layer, *m) for layer in layers for m in _mlp_modules(base, architecture, layer, space)
    ]
    has_lora = any(_is_lora(module) for _, _, module, _ in modules)
    mode = ("lora" if has_lora else "base") if apply_to == "auto" else apply_to
    if mode in ("lora", "both") and not has_lora:
        raise SubnetScopeError(
            f"apply_to='{apply_to}' needs LoRA adapters on the MLP projections of layers "
            f"{layers}, but this model has none there"
        )

    targets: list[tuple[_Target, torch.Tensor]] = []
    for layer, name, module, role in modules:
        trains = active[layer] != 0
        if bool(trains.all()):
            continue
        found = []
        base_found = _base_targets(name, module, role, layer, architecture.transposed_weights)
        if mode in ("base", "both"):
            found += base_found
        else:
            # Lora mode still holds base tensors that train (e.g. biases under peft bias="all").
            found += [t for t in base_found if getattr(t.owner, t.attr).requires_grad]
        if mode in ("lora", "both") and _is_lora(module):
            if not _lora_slice_is_zero(module, role, ~trains):
                raise SubnetScopeError(
                    f"the LoRA adapter of {name} already changes masked neurons (not a fresh "
                    "adapter with B = 0), so anti-drift cannot hold them in lora mode"
                )
            found += _lora_targets(name, module, role, layer)
        for target in found:
            targets.append((target, trains))

    for target, _ in targets:
        tensor = getattr(target.owner, target.attr)
        if parametrize.is_parametrized(target.owner, target.attr):
            raise SubnetScopeError(
                f"{target.name} is already parametrized; remove anti-drift before applying it again"
            )
        if not tensor.is_floating_point():
            raise SubnetScopeError(
                f"anti-drift cannot hold {target.name}: its {tensor.dtype} weights are quantized"
            )
        width = widths[target.layer]
        if tensor.shape[target.axis] != width:
            raise SubnetScopeError(
                f"{target.name} has shape {tuple(tensor.shape)}, with no axis of the layer's "
                f"{width} neurons where anti-drift expects it"
            )

    names = []
    for target, trains in targets:
        tensor = getattr(target.owner, target.attr)
        mask = _broadcast(trains, tensor, target.axis)
        with torch.no_grad():
            frozen = tensor.detach().clone()
            if target.zero_masked:
                frozen.masked_fill_(~mask.expand_as(frozen), 0)
        parametrize.register_parametrization(
            target.owner, target.attr, RowMaskedDelta(frozen, mask)
        )
        names.append(target.name)

    frozen_neurons = sum(int((active[layer] == 0).sum()) for layer in layers)
    trainable_neurons = sum(int((active[layer] != 0).sum()) for layer in layers)
    return AntiDriftReport(names, frozen_neurons, trainable_neurons)


def _parametrized(model: nn.Module):
    """(qualified name, module, tensor name, RowMaskedDelta) of every anti-drift parametrization."""
    for module_name, module in _base_model(model).named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for attr, chain in list(module.parametrizations.items()):
            for p in chain:
                if isinstance(p, RowMaskedDelta):
                    name = f"{module_name}.{attr}" if module_name else attr
                    yield name, module, attr, p


def remove_anti_drift(model: nn.Module, bake: bool = True) -> list[str]:
    """Remove every anti-drift parametrization and return the tensor names handled.

    `bake=True` keeps the effective (trained) weight; `bake=False` restores the frozen weight
    exactly and discards what was learned. Each parameter keeps its identity and requires_grad.
    """
    found = list(_parametrized(model))
    for name, module, attr, _ in found:
        if len(module.parametrizations[attr]) != 1:
            raise SubnetScopeError(
                f"{name} carries other parametrizations besides anti-drift; remove those first"
            )
    names = []
    for name, module, attr, p in found:
        if not bake:
            with torch.no_grad():
                module.parametrizations[attr].original.copy_(p.frozen)
        # Unbaked, the parameter now holds `frozen`, not the delta removal would otherwise leave.
        parametrize.remove_parametrizations(module, attr, leave_parametrized=bake)
        names.append(name)
    return names


def drift(model: nn.Module) -> float:
    """The largest |W_eff - frozen| over the masked entries of every parametrized tensor."""
    worst = 0.0
    with torch.no_grad():
        for _, module, attr, p in _parametrized(model):
            worst = max(worst, p.drift(getattr(module, attr)))
    return worst
