"""The model zoo: real published shapes (engine/models/zoo_configs.py) with random weights, saved
as bf16 safetensors folders for tests and benchmarks at the sizes researchers use.

A zoo model has the mirrored model's every shape and its attention pattern, RoPE and vocabulary
size, and random weights drawn by the model class's own initializer (seeded, so two builds are
the same). Its tokenizer is the demo's (SmolLM2, 49,152 tokens): every id it produces exists in
the bigger vocabularies; ids it cannot decode (a random model samples them) decode to nothing.
Numbers measured on a zoo model are costs (time, memory, bytes), never findings about the model
it mirrors. Built folders live under `cache/models/zoo/<name>/` and are listed by the model
picker like any folder; they are never committed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from engine.atomic import atomic_dir
from engine.errors import SubnetScopeError
from engine.models.sources import NamedSource, register_source
from engine.models.zoo_configs import ZOO, ZooSpec
from engine.paths import models_dir

if TYPE_CHECKING:
    from engine.models.memory import MemoryPlan

ZOO_PREFIX = "zoo/"
_MARKER = "subnetscope-zoo.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def zoo_spec(name: str) -> ZooSpec:
    spec = ZOO.get(name.removeprefix(ZOO_PREFIX))
    if spec is None:
        raise SubnetScopeError(f"no zoo model '{name}'; the zoo has {', '.join(ZOO)}")
    return spec


def zoo_config(name: str, **overrides: object):
    """The transformers config of a zoo model (nothing materialized)."""
    from transformers import AutoConfig

    values = dict(zoo_spec(name).config)
    values.update(overrides)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def zoo_plan(name: str, dtype: str = "bf16", device: str = "cpu") -> MemoryPlan:
    """What loading the zoo model in `dtype` on `device` needs, counted on the meta device."""
    import torch

    from engine.models.memory import plan_for_config
    from engine.models.precision import resolve_dtype

    config = zoo_config(name)
    torch_dtype = resolve_dtype(dtype, torch.device(device), torch.bfloat16)
    return plan_for_config(config, torch_dtype, torch.device(device), ZOO_PREFIX + name)


def zoo_dir(name: str) -> Path:
    return models_dir() / "zoo" / zoo_spec(name).name


def zoo_ready(name: str, folder: Path | None = None) -> bool:
    return ((folder or zoo_dir(name)) / _MARKER).is_file()


def _no_progress(fraction: float, message: str = "") -> None:
    return None


def _tokenizer_ids(folder: Path) -> dict[str, int | None]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    eos = tokenizer.eos_token_id
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
    }


def build_zoo_model(
    name: str,
    target: Path | None = None,
    *,
    device: str = "cpu",
    seed: int = 0,
    progress: Callable[[float, str], None] = _no_progress,
) -> Path:
    """Build zoo model `name` with seeded random bf16 weights into `target` (default its cache
    folder) and return the folder; a built folder is reused. Refuses, before allocating, a build
    that would not fit in memory on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.models.demo import ensure_demo_model
    from engine.models.memory import check_fits

    spec = zoo_spec(name)
    target = target or zoo_dir(spec.name)
    if zoo_ready(spec.name, target):
        progress(1.0, f"{spec.name} is built")
        return target
    check_fits(zoo_plan(spec.name, "bf16", device))
    tokenizer_source = ensure_demo_model()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=1800):
        if zoo_ready(spec.name, target):
            return target
        started = time.time()
        with atomic_dir(target) as tmp:
            for file in _TOKENIZER_FILES:
                if (tokenizer_source / file).is_file():
                    shutil.copy2(tokenizer_source / file, tmp / file)
            config = zoo_config(spec.name, **_tokenizer_ids(tmp))
            progress(0.05, f"drawing {spec.name}'s random weights in bf16 on {device}")
            torch.manual_seed(seed)
            with torch.device(device):
                model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
            parameters = sum(p.numel() for p in model.parameters())
            progress(0.6, "saving bf16 safetensors")
            model.save_pretrained(tmp, safe_serialization=True)
            del model
            marker = {
                "name": spec.name,
                "mirrors": spec.mirrors,
                "parameters": parameters,
                "dtype": "bfloat16",
                "seed": seed,
                "weights": "random (the model class's own initializer)",
                "tokenizer": "SmolLM2-135M-Instruct's (49,152 tokens); its special ids replace "
                "the mirrored config's",
                "seconds": round(time.time() - started, 1),
            }
            (tmp / _MARKER).write_text(json.dumps(marker, indent=2))
    progress(1.0, f"built {spec.name}")
    return target


def _register(spec: ZooSpec) -> None:
    register_source(
        NamedSource(
            name=ZOO_PREFIX + spec.name,
            label=f"{spec.mirrors.split(' ')[0]} shape, random bf16 (zoo)",
            path=lambda: zoo_dir(spec.name),
            ready=lambda: zoo_ready(spec.name),
            build=lambda progress: build_zoo_model(spec.name, progress=progress),
            missing=(
                f"zoo model {spec.name} is not built yet: "
                f"python -m engine models zoo --build {spec.name}"
            ),
        )
    )


for _spec in ZOO.values():
    _register(_spec)
