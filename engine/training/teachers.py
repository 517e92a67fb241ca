"""Teacher LoRA adapters for the generator (issue 20): checkpoints along each task's trajectory.

Seed 004's layout, under the job's `result/checkpoints/`:
- `{task}/{task}_{idx:03d}/`: a PEFT folder (adapter_model.safetensors, adapter_config.json whose
  base_model_name_or_path is the model source as given) plus `prompts.json` ({"task", "step",
  "prompts": the instructions of every example trained on up to that step}); idx 0 is the
  checkpoint after `checkpoint_every` steps, the last one the checkpoint after `steps`;
- `deltas/`: a DeltaCache (engine/lora/delta_cache.py) with v(base) and Δ per checkpoint over the
  probe texts (every task's probe prompts, LLGBM);
- `manifest.json`, written last: the run's settings, per task its prompts, held-out texts and
  losses, and one row per checkpoint.

Every task starts from the same LoRA init (seeded before get_peft_model, restored before each
task), as the checkpoints of one DnD trajectory share theirs. A plain AdamW loop on the full-text
causal LM loss of the formatted examples (engine.data.formats.format_example).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.atomic import atomic_dir, write_json_atomic
from engine.data.formats import format_example, format_prompt
from engine.data.lora_tasks import LORA_TASKS, LoraTask, task_prompts
from engine.errors import SubnetScopeError
from engine.evaluation.perplexity import texts_perplexity
from engine.jobs import JobContext
from engine.lora.adapters import load_adapter, sort_modules
from engine.lora.delta_cache import DeltaCache
from engine.lora.deltas import MAX_LENGTH, mean_last_state
from engine.models.devices import input_device
from engine.models.loading import LoadedModel
from engine.training.config import LoRARunConfig
from engine.training.lora_runs import _set_base_model, lora_config, peft_factors
from engine.training.teachers_config import TeachersConfig

FORMAT = "subnetscope-lora-teachers/1"
CHECKPOINTS = "checkpoints"
DELTAS = "deltas"
MANIFEST = "manifest.json"
PROMPTS = "prompts.json"


@dataclass
class TaskData:
    """One task's examples as the run uses them."""

    task: LoraTask
    train_prompts: list[str]  # instructions, in training order
    train_texts: list[str]  # formatted full texts
    heldout_prompts: list[str]
    heldout_texts: list[str]
    heldout_pairs: list[list[str]]  # [formatted prompt, the rest of the held-out text]
    probes: list[str]  # formatted prompts (no response) of the probe examples


def resolve_dtype(dtype: str) -> str:
    """fp32 | bf16: what `auto` means here (bf16 only on a CUDA card that computes in it)."""
    if dtype != "auto":
        return dtype
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def task_data(config: TeachersConfig, task: LoraTask, tokenizer) -> TaskData:
    """Held-out, probe and training examples: one seeded draw, split in that order, so the
    held-out and probe examples stay the same whatever `train_examples` is."""
    fixed = config.heldout_examples + config.probe_prompts
    if task.size() <= fixed:
        raise SubnetScopeError(
            f"task '{task.name}' has {task.size()} examples; it needs more than heldout_examples "
            f"+ probe_prompts ({fixed}) to train on"
        )
    n = min(task.size(), fixed + config.train_examples)
    examples = task.examples(n, config.seed)
    heldout = examples[: config.heldout_examples]
    probes = examples[config.heldout_examples : fixed]
    train = examples[fixed:]
    heldout_texts = [format_example(e, config.template, tokenizer) for e in heldout]
    pairs = []
    for example, text in zip(heldout, heldout_texts, strict=True):
        prompt = format_prompt(example, config.template, tokenizer)
        # The response as the text continues after the prompt (a chat template's end tokens too).
        pairs.append([prompt, text[len(prompt) :] if text.startswith(prompt) else example.response])
    return TaskData(
        task=task,
        train_prompts=task_prompts(train),
        train_texts=[format_example(e, config.template, tokenizer) for e in train],
        heldout_prompts=task_prompts(heldout),
        heldout_texts=heldout_texts,
        heldout_pairs=pairs,
        probes=[format_prompt(e, config.template, tokenizer) for e in probes],
    )


def _load(config: TeachersConfig, ctx: JobContext) -> LoadedModel:
    from engine.models.loading import load_model

    ctx.progress(0.0, f"loading {config.model}")
    loaded = load_model(config.model, dtype=resolve_dtype(config.dtype), inference=False)
    if not loaded.is_causal_lm:
        raise SubnetScopeError(f"'{config.model}' is not a causal language model")
    # No dropout anywhere: the base is frozen and the LoRA path has none (lora_dropout 0).
    loaded.model.eval().requires_grad_(False)
    return loaded


def _positions(model: torch.nn.Module, max_length: int) -> int:
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(max_length, limit) if isinstance(limit, int) else max_length


def text_batch(tokenizer, texts: list[str], max_length: int, device) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and labels (pads ignored) of `texts`."""
    rows = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (batch, seq)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (batch, seq)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def heldout_loss(model: torch.nn.Module, tokenizer, texts: list[str], max_length: int) -> float:
    """Mean token NLL (nats) over the held-out texts, each scored on its own."""
    return float(texts_perplexity(model, tokenizer, texts, max_length=max_length).nll)


def _order(config: TeachersConfig, task: str, n: int) -> list[int]:
    """Example indices for every step: seeded epochs of permutations, as long as the run needs."""
    rng = np.random.default_rng([config.seed, zlib.crc32(task.encode()), 1])
    need = config.steps * config.batch_size
    order: list[int] = []
    while len(order) < need:
        order.extend(rng.permutation(n).tolist())
    return order[:need]


def checkpoint_steps(config: TeachersConfig) -> list[int]:
    """Steps after which a checkpoint is saved: every `checkpoint_every`, and the last step."""
    steps = list(range(config.checkpoint_every, config.steps + 1, config.checkpoint_every))
    return steps if steps and steps[-1] == config.steps else [*steps, config.steps]


def _lora_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if "lora_" in n and p.requires_grad}


def _train_task(
    config: TeachersConfig,
    ctx: JobContext,
    peft_model,
    tokenizer,
    data: TaskData,
    root: Path,
    progress: tuple[float, float],
) -> list[dict]:
    """Train one task from the current (shared) init; save and score each checkpoint."""
    name = data.task.name
    params = _lora_parameters(peft_model)
    optimizer = torch.optim.AdamW(params.values(), lr=config.lr)
    order = _order(config, name, len(data.train_texts))
    saves = set(checkpoint_steps(config))
    device = input_device(peft_model)
    max_length = _positions(peft_model, config.max_length)
    seen: dict[str, None] = {}  # instructions trained on so far, in first-seen order
    rows = []
    start, span = progress
    for step in range(1, config.steps + 1):
        ctx.check_cancel()
        picked = order[(step - 1) * config.batch_size : step * config.batch_size]
        batch = text_batch(tokenizer, [data.train_texts[i] for i in picked], max_length, device)
        for i in picked:
            seen.setdefault(data.train_prompts[i], None)
        loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ctx.metric("train/loss", float(loss.detach()), step=step, task=name)
        if step not in saves:
            continue
        idx = len(rows)
        adapter_id = f"{name}_{idx:03d}"
        rel = f"{name}/{adapter_id}"
        with atomic_dir(root / rel) as tmp:
            peft_model.save_pretrained(str(tmp), safe_serialization=True)
            _set_base_model(tmp, config.model)
            write_json_atomic(tmp / PROMPTS, {"task": name, "step": step, "prompts": list(seen)})
        value = heldout_loss(peft_model, tokenizer, data.heldout_texts, config.max_length)
        ctx.metric("heldout_loss", value, step=step, task=name)
        rows.append(
            {
                "id": adapter_id,
                "task": name,
                "idx": idx,
                "step": step,
                "path": rel,
                "heldout_loss": value,
            }
        )
        ctx.progress(
            start + span * step / config.steps,
            f"{name}: step {step}/{config.steps}, held-out loss {value:.3f}",
        )
    return rows


def run_teachers(config: TeachersConfig, ctx: JobContext) -> dict:
    """Train every task's teacher; see the module docstring for what lands in the result."""
    from peft import get_peft_model

    started = time.monotonic()
    loaded = _load(config, ctx)
    model, tokenizer = loaded.model, loaded.tokenizer
    names = config.task_list()
    ctx.progress(0.02, f"preparing {len(names)} tasks")
    data = {t: task_data(config, LORA_TASKS[t], tokenizer) for t in names}
    probes = [p for t in names for p in data[t].probes]
    probe_length = _positions(model, MAX_LENGTH)

    ctx.progress(0.03, "scoring the base model")
    base_losses = {}
    for t in names:
        base_losses[t] = heldout_loss(model, tokenizer, data[t].heldout_texts, config.max_length)
        ctx.metric("heldout_loss", base_losses[t], step=0, task=t)
    v_base = mean_last_state(loaded, probes, max_length=probe_length)

    lora = LoRARunConfig(
        model=config.model,
        lora_rank=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=config.target_modules,
    )
    torch.manual_seed(config.seed)  # the one LoRA init every task starts from
    try:
        peft_model = get_peft_model(model, lora_config(lora))
    except ValueError as exc:
        raise SubnetScopeError(
            f"target_modules '{config.target_modules}' match no layer of {config.model}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    modules = list(sort_modules(list(peft_factors(peft_model))))
    params = _lora_parameters(peft_model)
    init = {n: p.detach().clone() for n, p in params.items()}

    root = ctx.result_dir / CHECKPOINTS
    adapters: list[dict] = []
    span = 0.85 / len(names)
    for i, t in enumerate(names):
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(init[n])
        ctx.progress(0.05 + i * span, f"training {t} ({i + 1}/{len(names)})")
        adapters += _train_task(
            config, ctx, peft_model, tokenizer, data[t], root, (0.05 + i * span, span)
        )
    peft_model.unload()  # the plain modules back (nothing merged): deltas go through apply_lora

    ctx.progress(0.9, f"delta activations of {len(adapters)} checkpoints")
    cache = DeltaCache(root / DELTAS)
    base_vector = v_base.numpy()
    cache.set_base(base_vector)
    for row in adapters:
        ctx.check_cancel()
        factors = load_adapter(root / row["path"], name=row["id"]).factors
        v = mean_last_state(loaded, probes, factors, max_length=probe_length)
        cache.put(row["id"], v.numpy() - base_vector, row["path"])

    final = {t: [r for r in adapters if r["task"] == t][-1]["heldout_loss"] for t in names}
    targets = sorted({m.rsplit(".", 1)[-1] for m in modules})
    given = [m.strip() for m in config.target_modules.split(",")]
    dtype = str(loaded.dtype).removeprefix("torch.")
    manifest = {
        "format": FORMAT,
        "model": config.model,
        "dtype": dtype,
        "rank": config.lora_rank,
        "alpha": config.lora_alpha,
        "target_modules": targets if config.target_modules == "all-linear" else given,
        "modules": modules,
        "max_length": config.max_length,
        "template": config.template,
        "probes": probes,
        "probe_max_length": probe_length,
        "tasks": {
            t: {
                "title": data[t].task.title,
                "family": data[t].task.family,
                "train_prompts": data[t].train_prompts,
                "heldout_texts": data[t].heldout_texts,
                "heldout_prompts": data[t].heldout_prompts,
                "heldout_pairs": data[t].heldout_pairs,
                "base_loss": base_losses[t],
                "final_loss": final[t],
            }
            for t in names
        },
        "adapters": adapters,
        "config": config.to_params(),
    }
    write_json_atomic(root / MANIFEST, manifest)
    seconds = round(time.monotonic() - started, 2)
    ctx.progress(1.0, f"{len(adapters)} checkpoints of {len(names)} tasks in {seconds:.0f} s")
    return {
        "kind": "lora_teachers",
        "checkpoints": str(root),
        "model": config.model,
        "dtype": dtype,
        "tasks": names,
        "adapters": len(adapters),
        "losses": {t: {"base": base_losses[t], "final": final[t]} for t in names},
        "seconds": seconds,
    }
