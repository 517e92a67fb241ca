"""Prompts in, adapter out: run a trained generator and save its adapter as a PEFT folder.

The folder holds the teachers' own adapter_config.json (same base, rank, alpha and targets),
adapter_model.safetensors with PEFT's key names, and generated.json (the prompts, the generator and
its encoder), so PEFT, the blender and `lora inspect` read it like any trained adapter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import SubnetScopeError
from engine.lora.generator.training import GENERATOR_DIR, META
from engine.lora.lowrank import Factors
from engine.models.loading import LoadedModel

GENERATED_JSON = "generated.json"
PEFT_PREFIX = "base_model.model."
MAX_PROMPTS = 256


@dataclass
class GeneratorRun:
    """A trained generator: the module, its meta (teachers, encoder, model) and folder."""

    folder: Path
    generator: Any
    meta: dict[str, Any]
    job_id: str | None = None

    @property
    def model(self) -> str:
        return str(self.meta["model"])

    @property
    def scale(self) -> float:
        return float(self.meta["alpha"]) / int(self.meta["rank"])


@dataclass
class GeneratedAdapter:
    factors: dict[str, Factors]
    prompts: list[str]
    run: GeneratorRun
    extra: dict[str, Any] = field(default_factory=dict)


def open_generator(spec: str | Path) -> GeneratorRun:
    """A generator from a `lora.generator_train` job id, its result folder, or 'demo'."""
    from engine.jobs import get_job
    from engine.jobs.files import RESULT
    from engine.lora.generator.hypernet import load_generator

    job_id = None
    if str(spec) == "demo":
        from engine.lora.generator.catalog import demo_generator

        found = demo_generator()
        if found is None:
            raise SubnetScopeError(
                "the demo's LoRA generator is not trained yet: run `python -m engine demo build` "
                "(the lora-generator part)"
            )
        folder, job_id = found.path / GENERATOR_DIR, found.view.id
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            candidates = (path, path / GENERATOR_DIR, path / RESULT / GENERATOR_DIR)
            folder = next((c for c in candidates if (c / META).is_file()), None)
            if folder is None:
                raise SubnetScopeError(
                    f"{path} holds no trained generator ({GENERATOR_DIR}/{META})"
                )
        else:
            try:
                view = get_job(str(spec))
            except SubnetScopeError:
                raise SubnetScopeError(
                    f"'{spec}' is neither a generator job id nor a folder holding a generator"
                ) from None
            folder, job_id = view.path / RESULT / GENERATOR_DIR, view.id
            if not (folder / META).is_file():
                raise SubnetScopeError(f"job {spec} holds no trained generator (yet)")
    meta = json.loads((folder / META).read_text())
    return GeneratorRun(folder, load_generator(folder), meta, job_id)


def clean_prompts(prompts: Sequence[str]) -> list[str]:
    kept = [p.strip() for p in prompts if p and p.strip()]
    if not kept:
        raise SubnetScopeError("type at least one prompt (one per line)")
    if len(kept) > MAX_PROMPTS:
        raise SubnetScopeError(f"{len(kept)} prompts: at most {MAX_PROMPTS} condition one adapter")
    return kept


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a file: a JSON list of strings, a JSONL of {"prompt"|"instruction"|"text"},
    or plain text with one prompt per line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SubnetScopeError(f"no prompts file at {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SubnetScopeError(f"{path} is not valid JSON ({exc})") from None
        if isinstance(data, dict) and "prompts" in data:
            data = data["prompts"]  # a teacher checkpoint's prompts.json
        if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
            raise SubnetScopeError(f"{path} must hold a JSON list of prompt strings")
        return clean_prompts(data)
    if path.suffix.lower() == ".jsonl":
        prompts = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise SubnetScopeError(f"{path}:{number} is not a JSON object") from None
            value = next(
                (record.get(k) for k in ("prompt", "instruction", "text") if k in record), None
            )
            if not isinstance(value, str):
                raise SubnetScopeError(f"{path}:{number} has no prompt, instruction or text field")
            prompts.append(value)
        return clean_prompts(prompts)
    return clean_prompts(text.splitlines())


def encoder_for(run: GeneratorRun, loaded: LoadedModel | None):
    from engine.lora.generator.encoder import open_encoder

    name = str(run.meta["encoder"])
    if name == "base" and loaded is None:
        raise SubnetScopeError("this generator encodes prompts with the base model: load it first")
    encoder = open_encoder(name, loaded)
    if encoder.dim != int(run.meta["cond_dim"]):
        raise SubnetScopeError(
            f"the encoder gives {encoder.dim}-d embeddings; the generator takes "
            f"{run.meta['cond_dim']}"
        )
    return encoder


def generate_adapter(
    run: GeneratorRun, prompts: Sequence[str], loaded: LoadedModel | None = None, encoder=None
) -> GeneratedAdapter:
    """One forward pass of the generator over the prompts' embeddings."""
    from engine.lora.generator.evaluate import generate_factors

    prompts = clean_prompts(prompts)
    encoder = encoder or encoder_for(run, loaded)
    factors = generate_factors(run.generator, encoder, prompts, run.scale)
    return GeneratedAdapter(factors, prompts, run)


def save_generated(adapter: GeneratedAdapter, out_dir: str | Path) -> Path:
    """A PEFT folder; refuses to overwrite a folder that exists (nothing saved is lost)."""
    from safetensors.torch import save_file

    from engine.atomic import atomic_dir

    out = Path(out_dir).expanduser()
    if out.exists():
        raise SubnetScopeError(f"{out} exists: pick a new folder name")
    config = json.loads((adapter.run.folder / "adapter_config.json").read_text())
    tensors = {}
    for module, f in adapter.factors.items():
        tensors[f"{PEFT_PREFIX}{module}.lora_A.weight"] = f.a.contiguous()
        tensors[f"{PEFT_PREFIX}{module}.lora_B.weight"] = f.b.contiguous()
    info = {
        "prompts": adapter.prompts,
        "generator": str(adapter.run.folder),
        "generator_job": adapter.run.job_id,
        "encoder": adapter.run.meta["encoder"],
        "teachers": adapter.run.meta.get("teachers"),
        **adapter.extra,
    }
    with atomic_dir(out) as tmp:
        config_text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        (tmp / "adapter_config.json").write_text(config_text)
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / GENERATED_JSON).write_text(json.dumps(info, indent=2) + "\n")
    return out
