"""Zoo models of real shapes for the scale tests: built once into the checkout's cache (about
15 s per billion parameters here), shared read-only by every test that needs one."""

from __future__ import annotations

from pathlib import Path

from engine.paths import PROJECT_ROOT

ZOO_ROOT = PROJECT_ROOT / "cache" / "models" / "zoo"


def zoo_folder(name: str) -> Path:
    """The built folder of zoo model `name` (built on first use, whatever the test's cache)."""
    from engine.models.zoo import build_zoo_model

    return build_zoo_model(name, ZOO_ROOT / name)


def _header(file: Path) -> tuple[int, dict]:
    """A safetensors header (tensor name → dtype, shape, data_offsets) and where its data starts."""
    import json
    import struct

    with file.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return 8 + size, json.loads(f.read(size))


def planted_copy(folder: Path, out: Path, plants: dict[str, list[int]]) -> dict[str, list[int]]:
    """A copy of bf16 model folder `folder` at `out` whose tensors in `plants` differ from the
    original at exactly the listed flat indices (each element + 1.0, rounded to bf16; written
    in place in the copied safetensors bytes, so nothing is loaded whole). Returns `plants`."""
    import shutil

    import torch

    out.mkdir(parents=True, exist_ok=True)
    for file in folder.iterdir():
        if file.is_file() and file.name != "subnetscope-zoo.json":
            shutil.copyfile(file, out / file.name)
    start, header = _header(out / "model.safetensors")
    with (out / "model.safetensors").open("r+b") as f:
        for name, indices in plants.items():
            if header[name]["dtype"] != "BF16":
                raise ValueError(f"{name} is {header[name]['dtype']}, not BF16")
            first = start + header[name]["data_offsets"][0]
            for index in indices:
                f.seek(first + 2 * index)
                old = torch.frombuffer(bytearray(f.read(2)), dtype=torch.bfloat16)
                new = (old.float() + 1.0).to(torch.bfloat16)
                assert not torch.equal(new, old), (name, index)  # a visible change in bf16
                f.seek(first + 2 * index)
                f.write(new.view(torch.int16).numpy().tobytes())
    return plants


def write_lora(
    folder: Path,
    shapes: dict[str, tuple[int, int]],
    *,
    base: str,
    r: int = 4,
    alpha: float = 8,
    seed: int = 0,
    std: float = 0.05,
) -> Path:
    """A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors) written by hand with
    random A and B for the modules `shapes` names ((out, in) each): no copy of a big base model,
    which PEFT's get_peft_model would wrap."""
    import json

    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for path, (d_out, d_in) in shapes.items():
        key = f"base_model.model.{path}"
        tensors[f"{key}.lora_A.weight"] = torch.randn(r, d_in, generator=generator) * std
        tensors[f"{key}.lora_B.weight"] = torch.randn(d_out, r, generator=generator) * std
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": r,
        "lora_alpha": alpha,
        "target_modules": sorted({p.rsplit(".", 1)[-1] for p in shapes}),
        "base_model_name_or_path": base,
        "lora_dropout": 0.0,
        "bias": "none",
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return folder
