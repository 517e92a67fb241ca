"""Tiny PEFT LoRA adapters for the LoRA tests: made with PEFT on tests/tiny.py models, saved."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from engine.lora.live import merged_weight
from engine.models import wrap_model
from tests.tiny import tiny_model


def make_adapter(
    folder: Path,
    seed: int = 0,
    *,
    family: str = "llama",
    r: int = 4,
    alpha: float = 8,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    rslora: bool = False,
    dora: bool = False,
    rank_pattern: dict | None = None,
    alpha_pattern: dict | None = None,
    base_name: str | None = None,
    std: float = 0.1,
) -> Path:
    """A PEFT LoRA folder with random A and B (B is zero at PEFT's init: no update otherwise)."""
    from peft import LoraConfig

    model = tiny_model(family).model
    if base_name is not None:
        model.config._name_or_path = base_name
        model.name_or_path = base_name
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=list(targets),
        use_rslora=rslora,
        use_dora=dora,
        rank_pattern=rank_pattern or {},
        alpha_pattern=alpha_pattern or {},
        fan_in_fan_out=family == "gpt2",
    )
    return _save_random_lora(model, config, Path(folder), seed, std)


def _save_random_lora(model, config, folder: Path, seed: int, std: float) -> Path:
    """Wrap `model` with PEFT, draw every LoRA factor from N(0, std²), save the folder."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0, std)
    peft_model.save_pretrained(folder)
    return folder


def make_adapters(root: Path, n: int = 3, **kwargs) -> list[Path]:
    """n adapters with seeds 0..n-1 under root/a0, root/a1, ..."""
    return [make_adapter(root / f"a{i}", i, **kwargs) for i in range(n)]


def peft_model_with(paths: list[Path], family: str = "llama"):
    """A fresh tiny model with each adapter loaded by PEFT under the names a0, a1, ..."""
    from peft import PeftModel

    model = tiny_model(family).model
    peft_model = PeftModel.from_pretrained(model, str(paths[0]), adapter_name="a0")
    for i, path in enumerate(paths[1:], start=1):
        peft_model.load_adapter(str(path), adapter_name=f"a{i}")
    return peft_model


def peft_delta(peft_model, module: str, adapter: str) -> torch.Tensor:
    """PEFT's own ΔW of one adapter at one module, as (d_out, d_in)."""
    layer = peft_model.base_model.model.get_submodule(module)
    delta = layer.get_delta_weight(adapter)
    return delta.T if getattr(layer, "fan_in_fan_out", False) else delta


def save_tiny_adapter(
    model: torch.nn.Module,
    folder: Path,
    *,
    seed: int = 0,
    base: str | None = None,
    r: int = 4,
    alpha: float = 8,
    targets: tuple[str, ...] | None = None,
    std: float = 0.1,
) -> Path:
    """A PEFT LoRA folder for `model` (left untouched: PEFT wraps a copy), random A and B.

    `targets=None` takes PEFT's default modules for the model type (llama: q_proj, v_proj);
    `base` is written as base_model_name_or_path.
    """
    import copy
    import json

    from peft import LoraConfig

    copied = copy.deepcopy(model)
    is_gpt2 = getattr(getattr(model, "config", None), "model_type", None) == "gpt2"
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=list(targets) if targets else None,
        fan_in_fan_out=is_gpt2,
    )
    folder = _save_random_lora(copied, config, Path(folder), seed, std)
    config_file = folder / "adapter_config.json"
    written = json.loads(config_file.read_text())
    written["base_model_name_or_path"] = base
    config_file.write_text(json.dumps(written, indent=2))
    return folder


def merged_copy(loaded, *factor_sets):
    """A separate model with every update merged into its weights by hand."""
    model = copy.deepcopy(loaded.model)
    with torch.no_grad():
        for factors in factor_sets:
            for path, f in factors.items():
                module = model.get_submodule(path)
                module.weight.copy_(merged_weight(module, f))
    return wrap_model(model, loaded.tokenizer, source="merged")
