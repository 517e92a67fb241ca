"""PEFT LoRA adapter folders: load their factors and scaling, and validate a set for one base."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.errors import SubnetScopeError
from engine.lora.lowrank import Factors, lora_scale
from engine.models.architectures import Architecture

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
_FACTOR_KEY = re.compile(r"^(?P<path>.+)\.lora_(?P<which>[AB])(?:\.[^.]+)?\.weight$")
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter's config says, resolved per module."""

    name: str
    path: Path
    base_model: str | None  # base_model_name_or_path, when the config gives one
    rank: int  # the config's r
    alpha: float  # the config's lora_alpha
    use_rslora: bool
    use_dora: bool
    scaling: float  # lora_scale(alpha, rank, use_rslora); modules may differ by rank/alpha_pattern
    target_modules: tuple[str, ...]
    modules: tuple[str, ...]  # module paths present, sorted by layer then kind
    rank_pattern: Mapping[str, int]
    alpha_pattern: Mapping[str, float]


@dataclass(frozen=True)
class LoraAdapter:
    """One adapter: its config and, per module path, ΔW = scale · B @ A."""

    info: AdapterInfo
    factors: dict[str, Factors]  # path -> B (out, r), A (r, in), scale = the module's scaling

    @property
    def name(self) -> str:
        return self.info.name


@dataclass(frozen=True)
class AdapterSet:
    """Adapters validated to share one base: same module paths and shapes."""

    adapters: tuple[LoraAdapter, ...]
    modules: tuple[str, ...]  # shared module paths (sorted by layer, then kind)
    warnings: tuple[str, ...] = ()  # what passed the checks but deserves a look

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.adapters)

    def shape(self, module: str) -> tuple[int, int]:
        """(d_out, d_in) of a module's update."""
        return self.adapters[0].factors[module].shape


def module_layer(path: str) -> int | None:
    """The block index in a module path (`model.layers.3.mlp.up_proj` → 3), or None."""
    match = _LAYER.search(path)
    return int(match.group(1)) if match else None


def module_kind(path: str) -> str:
    """The last component of a module path, e.g. `q_proj`."""
    return path.rsplit(".", 1)[-1]


def sort_modules(paths: Sequence[str]) -> tuple[str, ...]:
    """Module paths by layer (unlayered last), then kind, then path."""

    def key(path: str) -> tuple[int, int, str, str]:
        layer = module_layer(path)
        return (layer is None, layer if layer is not None else 0, module_kind(path), path)

    return tuple(sorted(paths, key=key))


def _pattern_value(patterns: Mapping[str, float], path: str) -> float | None:
    """PEFT's get_pattern_key: the first pattern that matches the end of the path."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return None


def _read_config(folder: Path, name: str) -> dict:
    config_file = folder / CONFIG_NAME
    if not folder.is_dir():
        raise SubnetScopeError(f"Adapter '{name}': no such folder {folder}.")
    if not config_file.is_file():
        raise SubnetScopeError(f"Adapter '{name}': {folder} has no {CONFIG_NAME}.")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SubnetScopeError(f"Adapter '{name}': cannot read {config_file}: {exc}.") from exc
    if not isinstance(config, dict):
        raise SubnetScopeError(f"Adapter '{name}': {config_file} is not a JSON object.")
    return config


def _check_plain_lora(config: dict, name: str) -> None:
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise SubnetScopeError(
            f"Adapter '{name}' is a {peft_type} adapter; only LoRA adapters can be blended."
        )
    # Each of these adds terms that are not scale·B@A; PEFT's add_weighted_adapter silently
    # drops them (PEFT #3761), so they are refused rather than blended wrong.
    if config.get("use_dora"):
        raise SubnetScopeError(
            f"Adapter '{name}' uses DoRA (use_dora=true), whose update is not scale·B@A; "
            "only plain LoRA adapters can be blended."
        )
    if config.get("lora_bias"):
        raise SubnetScopeError(
            f"Adapter '{name}' trains a LoRA bias (lora_bias=true); only plain LoRA adapters "
            "(no bias) can be blended."
        )
    if config.get("kasa_config") or config.get("use_kasa"):
        raise SubnetScopeError(f"Adapter '{name}' uses KaSA; only plain LoRA can be blended.")
    if config.get("target_parameters"):
        raise SubnetScopeError(
            f"Adapter '{name}' targets parameters (target_parameters), not linear modules."
        )


def _load_tensors(folder: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        bin_hint = (
            " (only .safetensors is read, never pickles)" if any(folder.glob("*.bin")) else ""
        )
        raise SubnetScopeError(f"Adapter '{name}': {folder} has no {WEIGHTS_NAME}{bin_hint}.")
    try:
        return load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise SubnetScopeError(f"Adapter '{name}': cannot read {weights}: {exc}.") from exc


def load_adapter(path: str | Path, name: str | None = None) -> LoraAdapter:
    """Read a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors)."""
    folder = Path(path).expanduser()
    name = name or folder.name
    config = _read_config(folder, name)
    _check_plain_lora(config, name)
    try:
        rank = int(config["r"])
        alpha = float(config.get("lora_alpha", rank))
    except (KeyError, TypeError, ValueError):
        raise SubnetScopeError(
            f"Adapter '{name}': {CONFIG_NAME} lacks a valid LoRA rank r and lora_alpha."
        ) from None
    if rank < 1 or not math.isfinite(alpha):
        raise SubnetScopeError(f"Adapter '{name}': invalid rank {rank} or alpha {alpha}.")
    use_rslora = bool(config.get("use_rslora", False))
    rank_pattern = {str(k): int(v) for k, v in (config.get("rank_pattern") or {}).items()}
    alpha_pattern = {str(k): float(v) for k, v in (config.get("alpha_pattern") or {}).items()}
    targets = config.get("target_modules") or ()
    targets = (targets,) if isinstance(targets, str) else tuple(sorted(map(str, targets)))

    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in _load_tensors(folder, name).items():
        plain = key.removeprefix(PEFT_PREFIX)
        match = _FACTOR_KEY.match(plain)
        if not match or tensor.ndim != 2:
            raise SubnetScopeError(
                f"Adapter '{name}' holds '{key}', which is not a LoRA A/B matrix of a linear "
                "layer (embedding LoRA, modules_to_save and conv LoRA cannot be blended)."
            )
        pairs.setdefault(match.group("path"), {})[match.group("which")] = tensor
    if not pairs:
        raise SubnetScopeError(f"Adapter '{name}': {WEIGHTS_NAME} holds no LoRA weights.")

    factors: dict[str, Factors] = {}
    for module in sort_modules(list(pairs)):
        pair = pairs[module]
        if set(pair) != {"A", "B"}:
            missing = "B" if "A" in pair else "A"
            raise SubnetScopeError(f"Adapter '{name}': module {module} lacks its lora_{missing}.")
        b, a = pair["B"], pair["A"]  # (out, r), (r, in)
        if b.shape[1] != a.shape[0]:
            raise SubnetScopeError(
                f"Adapter '{name}': module {module} has lora_B {tuple(b.shape)} and lora_A "
                f"{tuple(a.shape)}, whose ranks disagree."
            )
        r = a.shape[0]
        expected = _pattern_value(rank_pattern, module)
        expected = rank if expected is None else int(expected)
        if r != expected:
            raise SubnetScopeError(
                f"Adapter '{name}': module {module} has rank {r} but its config says {expected}."
            )
        module_alpha = _pattern_value(alpha_pattern, module)
        module_alpha = alpha if module_alpha is None else module_alpha
        factors[module] = Factors(b, a, lora_scale(module_alpha, r, use_rslora))

    base = config.get("base_model_name_or_path")
    info = AdapterInfo(
        name=name,
        path=folder,
        base_model=str(base) if base else None,
        rank=rank,
        alpha=alpha,
        use_rslora=use_rslora,
        use_dora=False,
        scaling=lora_scale(alpha, rank, use_rslora),
        target_modules=targets,
        modules=tuple(factors),
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
    )
    return LoraAdapter(info, factors)


def module_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(d_out, d_in) of every linear layer (nn.Linear or GPT-2's Conv1D) by module path."""
    shapes = {}
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear):
            shapes[path] = (module.out_features, module.in_features)
        elif type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
            shapes[path] = (module.weight.shape[1], module.weight.shape[0])  # weight (in, out)
    return shapes


def _check_architecture(
    adapter: LoraAdapter, architecture: Architecture, shapes: Mapping[str, tuple[int, int]] | None
) -> None:
    name = adapter.name
    for module, f in adapter.factors.items():
        if shapes is not None:
            if module not in shapes:
                raise SubnetScopeError(
                    f"Adapter '{name}' targets {module}, which the base model "
                    f"({architecture.model_type}) does not have as a linear layer."
                )
            if shapes[module] != f.shape:
                raise SubnetScopeError(
                    f"Adapter '{name}' updates {module} as {f.shape[0]}×{f.shape[1]}, but the base "
                    f"model's layer is {shapes[module][0]}×{shapes[module][1]}."
                )
            continue
        layer = module_layer(module)
        if layer is not None and layer >= architecture.num_layers:
            raise SubnetScopeError(
                f"Adapter '{name}' targets {module}, but the base model has only "
                f"{architecture.num_layers} layers."
            )
        if layer is None or layer >= len(architecture.blocks):
            continue
        block = architecture.blocks[layer]
        width = architecture.neurons_per_layer[layer]
        hidden = architecture.hidden_size
        expected = {block.down: (hidden, width), block.up: (width, hidden)}
        if block.gate:
            expected[block.gate] = (width, hidden)
        if module in expected and expected[module] != f.shape:
            want = expected[module]
            raise SubnetScopeError(
                f"Adapter '{name}' updates {module} as {f.shape[0]}×{f.shape[1]}, but the base "
                f"model's layer is {want[0]}×{want[1]}."
            )


def validate_set(
    adapters: Sequence[LoraAdapter],
    architecture: Architecture | None = None,
    shapes: Mapping[str, tuple[int, int]] | None = None,
) -> AdapterSet:
    """Check that adapters share a base, module paths and shapes; one error names a mismatch."""
    if not adapters:
        raise SubnetScopeError("An adapter set needs at least one adapter.")
    names = [a.name for a in adapters]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SubnetScopeError(f"Adapter names must be unique; '{duplicates[0]}' appears twice.")
    first = adapters[0]
    # Names of one base differ often ('demo', its folder, its hub id), so differing names are a
    # warning; shapes and, given a model, its architecture decide whether a set is one base's.
    warnings = []
    other = next(
        (a for a in adapters if a.info.base_model not in (None, first.info.base_model)), None
    )
    if other is not None:
        warnings.append(
            f"Adapter '{other.name}' names its base '{other.info.base_model}' but "
            f"'{first.name}' names '{first.info.base_model}'; their shapes agree, so they are "
            "blended as adapters of one base."
        )
    for adapter in adapters[1:]:
        mine, theirs = set(adapter.factors), set(first.factors)
        if mine != theirs:
            extra = sorted(mine - theirs)
            if extra:
                raise SubnetScopeError(
                    f"Adapter '{adapter.name}' targets {extra[0]}, which '{first.name}' does not "
                    f"({len(extra)} module(s) differ); a set needs the same target modules."
                )
            missing = sorted(theirs - mine)
            raise SubnetScopeError(
                f"Adapter '{adapter.name}' lacks {missing[0]}, which '{first.name}' targets "
                f"({len(missing)} module(s) differ); a set needs the same target modules."
            )
        for module, f in adapter.factors.items():
            g = first.factors[module]
            if f.shape != g.shape:
                raise SubnetScopeError(
                    f"Adapter '{adapter.name}' updates {module} as {f.shape[0]}×{f.shape[1]} "
                    f"but '{first.name}' as {g.shape[0]}×{g.shape[1]}; they are not for one base."
                )
    if architecture is not None or shapes is not None:
        if architecture is None:
            raise SubnetScopeError("Module shapes need the architecture they come from.")
        for adapter in adapters:
            _check_architecture(adapter, architecture, shapes)
    return AdapterSet(tuple(adapters), first.info.modules, tuple(warnings))


def load_adapter_set(
    paths: Sequence[str | Path],
    names: Sequence[str] | None = None,
    architecture: Architecture | None = None,
    *,
    shapes: Mapping[str, tuple[int, int]] | None = None,
) -> AdapterSet:
    """Load and validate PEFT LoRA folders for one base (`shapes`: the base's linear layers)."""
    if not paths:
        raise SubnetScopeError("Give at least one adapter folder.")
    if names is not None and len(names) != len(paths):
        raise SubnetScopeError(f"Got {len(names)} adapter names for {len(paths)} adapter folders.")
    if names is None:
        names = _unique_names([Path(p).expanduser() for p in paths])
    adapters = [load_adapter(p, n) for p, n in zip(paths, names, strict=True)]
    return validate_set(adapters, architecture, shapes)


def _unique_names(folders: Sequence[Path]) -> list[str]:
    """Folder names, lengthened with their parents where two would clash."""
    names = [f.name or str(f) for f in folders]
    for depth in range(2, 6):
        if len(set(names)) == len(names):
            break
        names = ["/".join(f.parts[-depth:]) for f in folders]
    return names


def base_shapes(source: str) -> tuple[Architecture, dict[str, tuple[int, int]]]:
    """A base model's architecture and linear-layer shapes from its config alone (no weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    from engine.models.architectures import detect_architecture
    from engine.models.loading import resolve_source

    resolved = resolve_source(source)
    kwargs = {"local_files_only": True} if resolved.kind == "hub" else {}
    if resolved.gguf_file:
        kwargs["gguf_file"] = resolved.gguf_file
    try:
        config = AutoConfig.from_pretrained(resolved.location, **kwargs)
    except (OSError, ValueError) as exc:
        raise SubnetScopeError(
            f"Cannot read the config of '{source}': {exc}".split("\n")[0]
        ) from exc
    cls = AutoModelForMaskedLM if config.model_type in ("bert", "roberta") else AutoModelForCausalLM
    with torch.device("meta"):  # shapes only: no memory, no initialization
        model = cls.from_config(config)
    return detect_architecture(model), module_shapes(model)
