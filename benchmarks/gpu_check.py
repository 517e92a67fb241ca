"""The GPU check (issue 19): on one H100 / H200, no network, under 8 minutes: build the Llama-3.2-1B
and Llama-3.1-8B zoo models from their configs on the GPU, then time bf16 loading, masked
generation, Wanda, an ICA capture, a LoRA blend slider move, a two-step PPO and a two-step LoRA SFT
(1B), a sparsity diff (1B) and LRP, each against a time budget, and write a JSON report: device,
versions, per-step seconds and peak GPU memory (torch.cuda.max_memory_allocated).

`--dry` checks on this CPU that it would run: every step runs through the same code on tiny
models of the zoo configs' families (2 layers, small widths: zoo_config overrides), and the memory
plans of the real 1B and 8B in bf16 are computed (zoo_plan, meta device) against an 80 GB GPU.
Exit status 1 names every step that failed. Run it with scripts/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

MODELS = {"1b": "llama-3.2-1b", "8b": "llama-3.1-8b"}
TRAIN_ON = "1b"  # PPO (full weights, Adam) and LoRA SFT; 8B full PPO needs > 80 GB (scale.md)
DIFF_ON = "1b"
GPU_BYTES = 80 * 10**9  # the card the plans are checked against: H100 80 GB
TOTAL_BUDGET_S = 480
# tiny shapes of the same families for --dry (zoo_config overrides)
TINY = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
PROMPT = "The history of the printing press begins in"
NEW_TOKENS = 32
ICA_TEXTS, ICA_MAX_LENGTH = 100, 32
ICA_TEXTS_DRY = 16  # the tiny models' 128k-vocabulary logits dominate a dry capture
WANDA_TEXTS, LRP_TEXTS, TEXT_TOKENS = 8, 2, 64
# Seconds per step on one H100 / H200 (model key → budget), summing to TOTAL_BUDGET_S: a run
# within every budget is within 8 minutes. Estimates until a GPU run measures them; the dry run
# reports them, unenforced.
BUDGETS: dict[str, dict[str, float]] = {
    "build": {"1b": 40, "8b": 90},  # 1B's includes converting the demo tokenizer's GGUF once
    "load_bf16": {"1b": 15, "8b": 45},
    "masked_generate": {"1b": 10, "8b": 10},
    "wanda": {"1b": 8, "8b": 12},
    "ica_capture": {"1b": 15, "8b": 30},
    "blend_slider": {"1b": 8, "8b": 12},
    "ppo_2_steps": {"1b": 60},
    "lora_sft_2_steps": {"1b": 40},
    "sparsity_diff": {"1b": 25},
    "lrp": {"1b": 20, "8b": 40},
}


@dataclass
class Step:
    name: str
    model: str  # a key of MODELS
    budget_s: float
    ok: bool = False
    seconds: float | None = None
    peak_gpu_bytes: int | None = None  # torch.cuda.max_memory_allocated over the step (GPU only)
    over_budget: bool = False
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Check:
    """Runs the steps in order, timing each; a failed step is recorded, the rest go on."""

    def __init__(self, device: str, work: Path, dry: bool) -> None:
        self.device, self.work, self.dry = device, work, dry
        self.steps: list[Step] = []

    def run(self, name: str, model: str, fn: Callable[[], dict[str, Any] | None]) -> bool:
        import torch

        step = Step(name, model, BUDGETS[name][model])
        cuda = self.device == "cuda"
        print(f"==> {name} [{model}]", file=sys.stderr, flush=True)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            step.details = fn() or {}
            if cuda:
                torch.cuda.synchronize()
            step.ok = True
        except Exception as exc:
            traceback.print_exc()
            step.error = f"{type(exc).__name__}: {exc}"
        step.seconds = round(time.perf_counter() - started, 3)
        if cuda:
            step.peak_gpu_bytes = int(torch.cuda.max_memory_allocated())
        step.over_budget = not self.dry and step.seconds > step.budget_s
        self.steps.append(step)
        return step.ok

    def skip(self, name: str, model: str, why: str) -> None:
        self.steps.append(Step(name, model, BUDGETS[name][model], error=f"skipped: {why}"))


# -- models --------------------------------------------------------------------------------------
def build_tiny(name: str, target: Path, device: str) -> Path:
    """A zoo config's family at TINY widths, built as build_zoo_model builds (seeded random bf16
    weights drawn on `device`, the demo's tokenizer) into `target`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.models.demo import ensure_demo_model
    from engine.models.zoo import zoo_config

    if (target / "config.json").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    tokenizer_source = ensure_demo_model()
    for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_source / file).is_file():
            shutil.copy2(tokenizer_source / file, target / file)
    tokenizer = AutoTokenizer.from_pretrained(target)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    config = zoo_config(
        name, **TINY, bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=pad
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(target, safe_serialization=True)
    return target


def build(check: Check, key: str) -> Path:
    target = check.work / MODELS[key]
    if check.dry:
        return build_tiny(MODELS[key], target, check.device)
    from engine.models.zoo import build_zoo_model

    return build_zoo_model(MODELS[key], target, device=check.device)


def plans() -> list[dict[str, Any]]:
    """The real models' bf16 plans on a CUDA device (meta device: nothing allocated)."""
    from engine.models.zoo import zoo_plan

    out = []
    for key, name in MODELS.items():
        plan = zoo_plan(name, "bf16", "cuda")
        out.append(
            {"model": key, "name": name, **plan.to_json(), "fits_80gb": plan.fits(GPU_BYTES)}
        )
    return out


# -- steps on a loaded model ---------------------------------------------------------------------
def _texts(limit: int) -> list[str]:
    from engine.data import load_texts

    return load_texts("demo-general", limit=limit, seed=0)


def masked_generate(loaded, new_tokens: int) -> dict[str, Any]:
    from benchmarks.scale import toggle_mask
    from engine.models import generate_text

    mask = toggle_mask(loaded)
    plain = generate_text(loaded, PROMPT, max_new_tokens=new_tokens, chat=False)
    masked = generate_text(loaded, PROMPT, max_new_tokens=new_tokens, mask=mask, chat=False)
    return {
        "mask_neurons": mask.size,
        "masked_seconds": round(masked.seconds, 3),
        "plain_seconds": round(plain.seconds, 3),
        "new_tokens": masked.new_tokens,
    }


def wanda(loaded) -> dict[str, Any]:
    from engine.attribution.wanda import wanda_scores

    scores = wanda_scores(loaded, _texts(WANDA_TEXTS), max_length=TEXT_TOKENS)
    return {"texts": WANDA_TEXTS, "layers": len(scores.neuron)}


def ica_capture(loaded, spill: Path, dry: bool) -> dict[str, Any]:
    from engine.ica import capture_activations

    started = time.perf_counter()
    texts = _texts(ICA_TEXTS_DRY if dry else ICA_TEXTS)
    acts = capture_activations(
        loaded,
        texts,
        range(loaded.architecture.num_layers),
        max_length=ICA_MAX_LENGTH,
        spill_dir=spill,
    )
    seconds = time.perf_counter() - started
    facts = {
        "texts": len(texts),
        "rows": int(acts.num_tokens),
        "features": int(acts.matrix.shape[1]),
        "rows_per_s": round(acts.num_tokens / seconds, 1),
        "spilled": acts.spilled_to is not None,
    }
    del acts
    shutil.rmtree(spill, ignore_errors=True)
    return facts


def blend_slider(loaded) -> dict[str, Any]:
    import torch

    from benchmarks.scale import random_adapter_set
    from engine.lora import BlendSpec, apply_lora, blend

    adapters = random_adapter_set(loaded)
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")["input_ids"].to(loaded.device)
    result = blend(adapters, BlendSpec((0.5, -0.3, 0.8)))
    with torch.inference_mode(), apply_lora(loaded, result.factors):
        loaded.model(ids)
    return {"modules": len(adapters.modules), "blend_seconds": round(result.seconds, 3)}


def lrp(folder: Path) -> dict[str, Any]:
    from engine.attribution.lrp import lrp_relevance
    from engine.attribution.lxt_compat import load_for_lrp

    loaded = load_for_lrp(str(folder), dtype="bf16")
    rel = lrp_relevance(loaded, _texts(LRP_TEXTS), max_length=TEXT_TOKENS)
    return {
        "tokens": rel.tokens,
        "precision": rel.precision,
        "conservation_gap": rel.conservation_gap,
        "device": str(loaded.device),
    }


# -- training and diff ---------------------------------------------------------------------------
def _job(work: Path, name: str):
    from engine.jobs import JobContext

    job_dir = work / "jobs" / name
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    (job_dir / "events.jsonl").touch()
    return JobContext(job_dir, lambda **status: None)


def ppo(folder: Path, work: Path, dry: bool) -> dict[str, Any]:
    from engine.training.jobs import train_ppo

    params = {
        "model": str(folder),
        "steps": 2,
        "batch_size": 2,
        "checkpoint_every": 2,
        "max_length": 32,
        "max_completion_length": 8 if dry else 16,
        "limit": 4,
        "reward": "brevity",
    }
    summary = train_ppo(params, _job(work, "ppo"))
    return {"params": params, "dtype": summary.get("dtype")}


def lora_sft(folder: Path, work: Path) -> dict[str, Any]:
    from engine.training.jobs import train_lora

    params = {
        "model": str(folder),
        "steps": 2,
        "batch_size": 2,
        "max_length": 64,
        "limit": 12,
        "eval_texts": 2,
        "rank_every": 1,
    }
    summary = train_lora(params, _job(work, "lora"))
    return {"params": params, "dtype": summary.get("dtype")}


def sparsity_diff(folder: Path, work: Path) -> dict[str, Any]:
    from benchmarks.scale import write_tuned_copy
    from benchmarks.sparsity_diff import diff_checkpoints_timed

    with tempfile.TemporaryDirectory(prefix="diff-", dir=work) as tmp:
        tuned = Path(tmp) / "tuned"
        planted = write_tuned_copy(folder, tuned)
        (Path(tmp) / "out").mkdir()
        run = diff_checkpoints_timed(folder, tuned, Path(tmp) / "out")
    return {
        "gbps": round(run["gbps"], 3),
        "anon_growth_mb": round(run["anon_growth_mb"], 1),
        "largest_tensor_mb": round(planted["largest_tensor_bytes"] / 2**20, 1),
        "changed_1e-5": run["changed_1e-5"],
    }


# -- the whole check -----------------------------------------------------------------------------
def _free(check: Check) -> None:
    import gc

    import torch

    gc.collect()
    if check.device == "cuda":
        torch.cuda.empty_cache()


def model_steps(check: Check, key: str, folder: Path) -> None:
    """Load one model in bf16 and run the inference-side steps on it; then free it."""
    from engine.models import load_model

    holder: dict[str, Any] = {}

    def load() -> dict[str, Any]:
        holder["m"] = load_model(str(folder), dtype="bf16", device=check.device)
        return {"dtype": str(holder["m"].dtype), "device": str(holder["m"].device)}

    if not check.run("load_bf16", key, load):
        for name in ("masked_generate", "wanda", "ica_capture", "blend_slider"):
            check.skip(name, key, "the model did not load")
        return
    loaded = holder.pop("m")
    new_tokens = 8 if check.dry else NEW_TOKENS
    check.run("masked_generate", key, lambda: masked_generate(loaded, new_tokens))
    check.run("wanda", key, lambda: wanda(loaded))
    check.run("ica_capture", key, lambda: ica_capture(loaded, check.work / "ica-spill", check.dry))
    check.run("blend_slider", key, lambda: blend_slider(loaded))
    loaded = None  # the last reference (the lambdas share it): the next model needs the memory
    _free(check)


def run_check(check: Check) -> None:
    folders: dict[str, Path] = {}
    for key in MODELS:
        if check.run("build", key, lambda key=key: {"folder": str(build(check, key))}):
            folders[key] = check.work / MODELS[key]
            model_steps(check, key, folders[key])
        else:
            for name in ("load_bf16", "masked_generate", "wanda", "ica_capture", "blend_slider"):
                check.skip(name, key, "the model was not built")
    for name, key, fn in (
        ("ppo_2_steps", TRAIN_ON, lambda f: ppo(f, check.work, check.dry)),
        ("lora_sft_2_steps", TRAIN_ON, lambda f: lora_sft(f, check.work)),
        ("sparsity_diff", DIFF_ON, lambda f: sparsity_diff(f, check.work)),
    ):
        if key in folders:
            check.run(name, key, lambda fn=fn, key=key: fn(folders[key]))
            _free(check)
        else:
            check.skip(name, key, "the model was not built")
    # Last: LXT patches the model classes for the whole process.
    for key in MODELS:
        if key in folders:
            check.run("lrp", key, lambda key=key: lrp(folders[key]))
            _free(check)
        else:
            check.skip("lrp", key, "the model was not built")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def report(check: Check, started: datetime, wall: float, plan_rows: list[dict]) -> dict:
    import torch

    failed = [s for s in check.steps if not s.ok]
    over = [s for s in check.steps if s.over_budget]
    cuda = check.device == "cuda"
    return {
        "mode": "dry" if check.dry else "gpu",
        "ok": not failed and not over and (check.dry or wall <= TOTAL_BUDGET_S),
        "started_at": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "total_budget_s": TOTAL_BUDGET_S,
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({platform.machine()}, dry run)",
        "gpu_total_bytes": torch.cuda.get_device_properties(0).total_memory if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": _version("transformers"),
        "trl": _version("trl"),
        "peft": _version("peft"),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "models": {k: ("tiny " if check.dry else "") + v for k, v in MODELS.items()},
        "tiny_overrides": TINY if check.dry else None,
        "plans": plan_rows,
        "steps": [asdict(s) for s in check.steps],
        "failed": [f"{s.name} [{s.model}]: {s.error}" for s in failed],
        "over_budget": [f"{s.name} [{s.model}]: {s.seconds} s > {s.budget_s} s" for s in over],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description="Time every method on the 1B and 8B zoo models on one CUDA GPU (issue 19); "
        "--dry checks on a CPU that every step runs, on tiny models of the same families.",
    )
    parser.add_argument("--dry", action="store_true", help="CPU, tiny models, budgets unenforced")
    parser.add_argument("--out", type=Path, help="JSON report (default: cache/benchmarks/)")
    parser.add_argument(
        "--work", type=Path, help="where the models are built (default: cache/gpu_check/)"
    )
    args = parser.parse_args(argv)

    import torch

    from engine.atomic import write_json_atomic
    from engine.paths import cache_root
    from engine.runtime import limit_threads

    if not args.dry and not torch.cuda.is_available():
        print(
            "gpu check: no CUDA GPU here; run it on a GPU machine, or with --dry to check on "
            "this CPU that every step would run",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network: everything is built locally
    if args.dry:
        limit_threads(1)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    sub = "gpu_check-dry" if args.dry else "gpu_check"
    check = Check("cpu" if args.dry else "cuda", args.work or cache_root() / sub, args.dry)
    check.work.mkdir(parents=True, exist_ok=True)
    try:
        plan_rows = plans()
    except Exception as exc:  # recorded, and the check fails
        plan_rows = [{"error": f"{type(exc).__name__}: {exc}"}]
    run_check(check)
    out = report(check, started, time.perf_counter() - clock, plan_rows)
    if any("error" in row or not row["fits_80gb"] for row in plan_rows):
        out["ok"] = False
        out["failed"].append(f"memory plans: {json.dumps(plan_rows)}")
    path = args.out or cache_root() / "benchmarks" / f"{sub}-{started:%Y%m%dT%H%M%SZ}.json"
    write_json_atomic(path, out)
    for s in check.steps:
        gpu = f"{s.peak_gpu_bytes / 2**30:6.1f} GiB" if s.peak_gpu_bytes is not None else "-"
        state = "ok" if s.ok and not s.over_budget else "OVER" if s.ok else "FAIL"
        print(
            f"{s.name:18} {s.model:3} {s.seconds or 0:8.1f} s / {s.budget_s:4.0f} s  {gpu}  {state}"
        )
    print(f"\n{out['device']}; wall {out['wall_seconds']} s; report in {path}")
    if not out["ok"]:
        for line in out["failed"] + out["over_budget"]:
            print(f"gpu check FAILED: {line}", file=sys.stderr)
        if not check.dry and out["wall_seconds"] > TOTAL_BUDGET_S:
            print(f"gpu check FAILED: took {out['wall_seconds']} s > {TOTAL_BUDGET_S} s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
