"""Scale (issue 19): each view's costly call on the demo model (135M) and zoo models of 0.5B and
1B parameters (random weights of the real shapes, engine/models/zoo.py), ratios side by side.

Per model: (a) load time and resident memory in bf16 against fp32, each load in a fresh process
(RSS after load_model and one read of every weight, minus before); (b) a live pruning toggle (a
zero mask over 1 % of every layer's MLP neurons, per call) + 32 greedy tokens against plain
generation; (c) an ICA capture of 100 texts × ≤ 16 tokens, all layers (rows/s, whether it spills
at the default 2 GiB budget; on the first model also forced to spill) against a plain forward
over the same batches; (d) LRP (LXT, CP rules) of one 32-token text against a plain forward +
backward into the input embeddings of the same text and target (time and peak RSS, each in a
fresh process); (e) a LoRA slider move (engine.lora.blend svd of three rank-8 adapters + one
forward under apply_lora) against a plain forward; (f) a sparsity diff of the model's checkpoint
against a copy with 1 % of its entries changed: GB/s against the read bandwidth of a zero-copy
mmap pass over the same files in the same run, peak anonymous RSS against the largest tensor
(benchmarks/sparsity_diff.py's own timing functions).

The analyses (b)–(e) run in bf16, the precision the issue asks for at these sizes; the runner caps
torch and BLAS at one thread, and every child process too. Models: `SUBNETSCOPE_BENCH_SCALE_MODELS`
(comma-separated: demo and zoo names; default below). Zoo models not built yet are built first
(llama-3.2-1b: about 30 s, 2.5 GB), outside every timing. Repeats: (b), (c) and (e) alternate
`repeats` rounds after a warm-up (the forced spill runs once), (d) times `repeats` passes after
one, (a) loads `repeats − 1` times per dtype (at least once), (f) runs once. Numbers measured on
a zoo model are costs (time, memory, bytes), never findings about the model it mirrors.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.runner import Result, benchmark, compare, json_child

MODELS_ENV = "SUBNETSCOPE_BENCH_SCALE_MODELS"
DEFAULT_MODELS = ("demo", "qwen2.5-0.5b", "llama-3.2-1b")
DTYPE = "bf16"  # of the analyses (b)–(e)
PROMPT = "The history of the printing press begins in"
NEW_TOKENS = 32
MASK_FRACTION = 0.01  # of each layer's MLP neurons, zeroed
ICA_TEXTS = 100
ICA_MAX_LENGTH = 16  # tokens kept per text: 100 texts × ≤ 16 tokens keeps a 1B capture ~ 1 min
ICA_BATCH = 8
LRP_TOKENS = 32
LORA_RANK, LORA_ADAPTERS = 8, 3
LORA_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DIFF_FRACTION = 0.01  # of every tensor's entries changed in the tuned copy
SEED = 0
TIMEOUT = 600
LRP_TEXT = (
    "Language models store much of what they know in the neurons of their MLP layers. "
    "Switching a few of them off can change an answer, while most of them matter little. "
) * 4


# -- process memory ------------------------------------------------------------------------------
def status_mb(key: str) -> float:
    """A /proc/self/status field (VmRSS, RssAnon, RssFile, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def reset_peak() -> None:
    with contextlib.suppress(OSError):  # Linux ≥ 4.0: VmHWM := VmRSS
        Path("/proc/self/clear_refs").write_text("5")


def _memory() -> dict[str, float]:
    return {k: status_mb(k) for k in ("VmRSS", "RssAnon", "RssFile")}


def touch_weights(model) -> None:
    """Read one element of every 4 KiB page of every weight. Weights memory-mapped from a
    safetensors file (a bf16 checkpoint loaded in bf16) are resident only once read; a memory
    measurement that must count them, or must not, reads them first."""
    import torch

    with torch.inference_mode():
        for p in model.parameters():
            p.view(-1)[:: max(1, 4096 // p.element_size())].sum()


# -- children: one fresh process per measurement whose memory must be its own -------------------
def _child_load(source: str, dtype: str) -> dict[str, Any]:
    import torch  # noqa: F401  (imported before the "before" reading: not the model's memory)
    import transformers  # noqa: F401

    from engine.models import load_model

    before = _memory()
    reset_peak()
    started = time.perf_counter()
    loaded = load_model(source, dtype=dtype)
    seconds = time.perf_counter() - started
    loaded_at = _memory()
    touch_weights(loaded.model)  # so the RSS is what holding the model costs
    after = _memory()
    return {
        "seconds": seconds,
        "rss_growth_mb": after["VmRSS"] - before["VmRSS"],
        "anon_growth_mb": after["RssAnon"] - before["RssAnon"],
        "file_growth_mb": after["RssFile"] - before["RssFile"],
        "rss_growth_before_touch_mb": loaded_at["VmRSS"] - before["VmRSS"],
        "peak_growth_mb": status_mb("VmHWM") - before["VmRSS"],
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
    }


def _child_gradient(source: str, mode: str, repeats: int) -> dict[str, Any]:
    """`lrp`: engine.attribution LRP of one text; `plain`: the same text's forward and
    `target.backward()` into the input embeddings, parameters frozen (LRP never computes their
    gradients), on a model LXT never patched: the baseline benchmarks/pruning.py uses."""
    import torch

    if mode == "lrp":
        from engine.attribution.lrp import lrp_relevance
        from engine.attribution.lxt_compat import load_for_lrp

        loaded = load_for_lrp(source, dtype=DTYPE)
    else:
        from engine.models import load_model

        loaded = load_model(source, dtype=DTYPE)  # eval, requires_grad off
    ids = loaded.tokenizer(LRP_TEXT, return_tensors="pt")["input_ids"][:, :LRP_TOKENS]
    text = loaded.tokenizer.decode(ids[0])  # what LRP re-tokenizes (≈ LRP_TOKENS tokens)
    model = loaded.model

    def plain() -> None:
        x = ids.to(loaded.device)
        with torch.enable_grad():
            embeds = model.get_input_embeddings()(x).detach().requires_grad_()
            logits = model(inputs_embeds=embeds, use_cache=False).logits
            target = logits[0, :-1].gather(-1, x[0, 1:, None]).float().sum()
            target.backward()

    def lrp() -> float:
        rel = lrp_relevance(loaded, [text], max_length=LRP_TOKENS + 8)
        return rel.conservation_gap

    step = lrp if mode == "lrp" else plain
    touch_weights(model)  # the weights' pages are not the pass's memory
    reset_peak()
    start_rss = status_mb("VmRSS")
    out = step()  # warm-up (in the peak: the first pass allocates what every pass needs)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        samples.append(time.perf_counter() - started)
    return {
        "samples": samples,
        "peak_growth_mb": status_mb("VmHWM") - start_rss,
        "tokens": int(ids.shape[1]),
        "conservation_gap": out,
        "lxt_imported": "lxt" in sys.modules,
    }


CHILDREN = {"load": _child_load, "gradient": _child_gradient}


def run_child(mode: str, *args: Any) -> dict[str, Any]:
    return json_child(
        ["benchmarks.scale", mode, json.dumps(args)],
        f"scale child {mode} {args}",
        TIMEOUT,
        TRANSFORMERS_VERBOSITY="error",
    )


# -- read bandwidth and the tuned copy -----------------------------------------------------------
def safetensors_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def write_tuned_copy(base: Path, tuned: Path, seed: int = SEED) -> dict[str, Any]:
    """`tuned`: base's safetensors file for file, with DIFF_FRACTION of every tensor's entries
    moved by 0.01 (a planted sparse update, above every default tolerance in bf16)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    tuned.mkdir(parents=True)
    gen = torch.Generator().manual_seed(seed)
    step = round(1 / DIFF_FRACTION)
    largest = count = 0
    for path in safetensors_files(base):
        out = {}
        with safe_open(str(path), "pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is no dict)
                t = f.get_tensor(name).clone()
                flat = t.view(-1)
                start = int(torch.randint(step, (1,), generator=gen))
                flat[start::step] += 0.01
                largest = max(largest, t.numel() * t.element_size())
                count += 1
                out[name] = t
        save_file(out, str(tuned / path.name), metadata={"format": "pt"})
        del out
    index = base / "model.safetensors.index.json"
    if index.is_file():
        shutil.copy2(index, tuned / index.name)
    return {"largest_tensor_bytes": largest, "tensors": count}


# -- the model under test ------------------------------------------------------------------------
def model_names() -> list[str]:
    raw = os.environ.get(MODELS_ENV, ",".join(DEFAULT_MODELS))
    return [n.strip() for n in raw.split(",") if n.strip()]


def source_of(name: str) -> tuple[str, float]:
    """The model source of `name` and the seconds it took to build it (0 when built already)."""
    if name == "demo":
        from engine.models.demo import ensure_demo_model

        ensure_demo_model()
        return "demo", 0.0
    from engine.models.zoo import ZOO_PREFIX, build_zoo_model, zoo_ready

    started = time.perf_counter()
    built = zoo_ready(name)
    build_zoo_model(name)
    return ZOO_PREFIX + name, 0.0 if built else time.perf_counter() - started


def folder_of(source: str) -> Path:
    from engine.models.loading import resolve_source

    return Path(resolve_source(source).location)


def toggle_mask(loaded):
    """A zero mask over MASK_FRACTION of every layer's MLP neurons, drawn from a fixed seed."""
    from engine.models import NeuronMask

    rng = random.Random(SEED)
    widths = loaded.architecture.neurons_per_layer
    pairs = [
        (layer, n)
        for layer, width in enumerate(widths)
        for n in rng.sample(range(width), max(1, round(MASK_FRACTION * width)))
    ]
    return NeuronMask.from_pairs(pairs, mode="zero")


def random_adapter_set(loaded):
    """LORA_ADAPTERS random rank-LORA_RANK adapters on every attention and MLP projection, as the
    LoRA view's AdapterSet (scale 2: alpha 16 / r 8)."""
    import torch

    from engine.lora import AdapterSet, LoraAdapter
    from engine.lora.adapters import AdapterInfo, module_kind, module_shapes
    from engine.lora.lowrank import Factors

    shapes = {
        path: shape
        for path, shape in module_shapes(loaded.model).items()
        if ".layers." in f".{path}" and module_kind(path) in LORA_KINDS
    }
    gen = torch.Generator().manual_seed(SEED)
    modules = tuple(shapes)
    adapters = []
    for i in range(LORA_ADAPTERS):
        factors = {
            path: Factors(
                torch.randn(d_out, LORA_RANK, generator=gen) * 0.02,  # (d_out, r)
                torch.randn(LORA_RANK, d_in, generator=gen) / d_in**0.5,  # (r, d_in)
                2.0,
            )
            for path, (d_out, d_in) in shapes.items()
        }
        info = AdapterInfo(
            name=f"random-{i}",
            path=Path(f"random-{i}"),
            base_model=loaded.source,
            rank=LORA_RANK,
            alpha=16.0,
            use_rslora=False,
            use_dora=False,
            scaling=2.0,
            target_modules=LORA_KINDS,
            modules=modules,
            rank_pattern={},
            alpha_pattern={},
        )
        adapters.append(LoraAdapter(info, factors))
    return AdapterSet(tuple(adapters), modules)


def alternating(names: tuple[str, ...], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, name) over `rounds` rounds, each starting one name later than the last."""
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            yield round_, name


def paired_ratio(measured: list[float], baseline: list[float]) -> float:
    """Median over rounds of measured/baseline from the same round: robust to drifting load."""
    return round(statistics.median(m / b for m, b in zip(measured, baseline, strict=True)), 6)


# -- the measurements ----------------------------------------------------------------------------
def measure_loads(name: str, source: str, repeats: int, shared: dict) -> list[Result]:
    runs: dict[str, list[dict]] = {"bf16": [], "fp32": []}
    for _, dtype in alternating(("bf16", "fp32"), repeats):
        runs[dtype].append(run_child("load", source, dtype))
    facts = shared | {"loads": runs}
    return [
        compare(
            f"scale.{name}.load.seconds",
            "seconds of load_model(dtype=bf16) in a fresh process (median)",
            [r["seconds"] for r in runs["bf16"]],
            "load_model(dtype=fp32)",
            [r["seconds"] for r in runs["fp32"]],
            details=facts,
        ),
        compare(
            f"scale.{name}.load.rss",
            "RSS after load_model(dtype=bf16) minus before, MB (median)",
            [r["rss_growth_mb"] for r in runs["bf16"]],
            "the same with dtype=fp32",
            [r["rss_growth_mb"] for r in runs["fp32"]],
            unit="MB",
            details=shared
            | {
                key: {d: [round(r[key]) for r in v] for d, v in runs.items()}
                for key in ("anon_growth_mb", "file_growth_mb", "peak_growth_mb")
            }
            | {"parameters": runs["bf16"][0]["parameters"]},
        ),
    ]


def measure_toggle(name: str, loaded, repeats: int, shared: dict) -> Result:
    from engine.models import generate_text

    mask = toggle_mask(loaded)
    variants = {"masked": mask, "plain": None}

    def run(variant: str):
        return generate_text(
            loaded, PROMPT, max_new_tokens=NEW_TOKENS, mask=variants[variant], chat=False
        )

    for variant in variants:  # warm-up, short
        generate_text(loaded, PROMPT, max_new_tokens=2, mask=variants[variant], chat=False)
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    tokens: dict[str, list[int]] = {v: [] for v in variants}
    texts: dict[str, str] = {}
    for _, variant in alternating(tuple(variants), repeats):
        out = run(variant)
        seconds[variant].append(out.seconds)
        tokens[variant].append(out.new_tokens)
        texts[variant] = out.text
    return compare(
        f"scale.{name}.toggle_generate",
        f"seconds of generate_text with a zero mask over {MASK_FRACTION:.0%} of the MLP neurons "
        f"({mask.size} neurons), {NEW_TOKENS} greedy tokens (median)",
        seconds["masked"],
        f"plain generate_text of {NEW_TOKENS} tokens",
        seconds["plain"],
        details=shared
        | {
            "paired_ratio_median": paired_ratio(seconds["masked"], seconds["plain"]),
            "mask_neurons": mask.size,
            "new_tokens": tokens,
            "output_differs": texts["masked"] != texts["plain"],
        },
    )


def measure_ica(
    name: str, loaded, texts: list[str], repeats: int, shared: dict, *, spill: bool
) -> list[Result]:
    import torch

    from engine.ica import capture_activations
    from engine.ica.capture import encode_texts, padded_batches
    from engine.ica.config import DEFAULT_MEMORY_BUDGET

    layers = list(range(loaded.architecture.num_layers))
    encoded = encode_texts(loaded, texts, ICA_MAX_LENGTH)
    rows = sum(len(e) for e in encoded)
    features = sum(loaded.architecture.neurons_per_layer)

    def plain(which: Sequence[Sequence[int]] = encoded) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for _, ids, attention in padded_batches(loaded, which, ICA_BATCH):
                loaded.model(ids.to(loaded.device), attention_mask=attention.to(loaded.device))
        return time.perf_counter() - started

    def capture(budget: int, spill_dir: Path) -> tuple[float, Path | None]:
        started = time.perf_counter()
        acts = capture_activations(
            loaded,
            texts,
            layers,
            max_length=ICA_MAX_LENGTH,
            batch_size=ICA_BATCH,
            memory_budget=budget,
            spill_dir=spill_dir,
        )
        seconds = time.perf_counter() - started
        spilled = acts.spilled_to
        shutil.rmtree(spill_dir, ignore_errors=True)
        del acts
        return seconds, spilled

    plain(encoded[:ICA_BATCH])  # warm-up: one batch
    plain_s: list[float] = []
    ram_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="subnetscope-scale-ica-") as tmp:
        for _, variant in alternating(("plain", "capture"), repeats):
            if variant == "plain":
                plain_s.append(plain())
            else:
                seconds, ram_spilled = capture(DEFAULT_MEMORY_BUDGET, Path(tmp) / "a")
                ram_s.append(seconds)
        # Forced to disk (budget 0): what a capture past the budget costs on this disk; on the
        # first model only (the smallest), to keep the run within its time.
        disk_s = capture(0, Path(tmp) / "b")[0] if spill else None
    ram_median = statistics.median(ram_s)
    facts = shared | {
        "texts": len(texts),
        "max_length": ICA_MAX_LENGTH,
        "rows": rows,
        "features": features,
        "layers": len(layers),
        "matrix_gb": round(rows * features * 4 / 1e9, 3),
        "memory_budget_gb": round(DEFAULT_MEMORY_BUDGET / 2**30, 2),
        "spilled_at_default_budget": ram_spilled is not None,
        "rows_per_s_default_budget": round(rows / ram_median, 1),
        "rows_per_s_plain_forward": round(rows / statistics.median(plain_s), 1),
    }
    results = [
        compare(
            f"scale.{name}.ica_capture",
            f"seconds of capture_activations: {len(texts)} texts × ≤ {ICA_MAX_LENGTH} tokens, all "
            f"layers, default memory budget (median) ({'spilled' if ram_spilled else 'in RAM'})",
            ram_s,
            "plain forward over the same padded batches (no hooks, no copies)",
            plain_s,
            details=facts,
        )
    ]
    if disk_s is not None:
        results.append(
            compare(
                f"scale.{name}.ica_capture_spill",
                "seconds of the same capture forced to spill to a .npy memmap (budget 0)",
                [disk_s],
                "the capture at the default budget",
                ram_s,
                details=facts | {"rows_per_s_spilled": round(rows / disk_s, 1)},
            )
        )
    return results


def measure_gradient(name: str, source: str, repeats: int, shared: dict) -> list[Result]:
    runs = {mode: run_child("gradient", source, mode, repeats) for mode in ("plain", "lrp")}
    facts = shared | {
        "tokens": runs["lrp"]["tokens"],
        "rules": "cp",
        "conservation_gap": runs["lrp"]["conservation_gap"],
        "baseline_is": "forward + target.backward() into the input embeddings, parameters "
        "frozen, unpatched model, same text and target (Σ teacher-forced next-token logits), "
        "as benchmarks/pruning.py",
        "lxt_in_baseline": runs["plain"]["lxt_imported"],
    }
    return [
        compare(
            f"scale.{name}.lrp.seconds",
            f"seconds of lrp_relevance over one {runs['lrp']['tokens']}-token text (bf16, CP "
            "rules) (median)",
            runs["lrp"]["samples"],
            "plain forward + backward into the input embeddings of the same text",
            runs["plain"]["samples"],
            details=facts,
        ),
        compare(
            f"scale.{name}.lrp.peak_rss",
            "peak RSS growth of LRP over its passes, MB",
            [runs["lrp"]["peak_growth_mb"]],
            "the plain forward + backward's",
            [runs["plain"]["peak_growth_mb"]],
            unit="MB",
            details=facts,
        ),
    ]


def measure_lora(name: str, loaded, repeats: int, shared: dict) -> Result:
    import torch

    from engine.lora import BlendSpec, apply_lora, blend

    adapters = random_adapter_set(loaded)
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")["input_ids"].to(loaded.device)
    rng = random.Random(SEED)
    blend_s: list[float] = []

    def move() -> float:
        spec = BlendSpec(tuple(round(rng.uniform(-1, 1), 3) for _ in range(LORA_ADAPTERS)))
        started = time.perf_counter()
        factors = blend(adapters, spec).factors
        blended = time.perf_counter()
        with torch.inference_mode(), apply_lora(loaded, factors):
            loaded.model(ids)
        done = time.perf_counter()
        blend_s.append(blended - started)
        return done - started

    def plain() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            loaded.model(ids)
        return time.perf_counter() - started

    samples: dict[str, list[float]] = {"move": [], "plain": []}
    for round_, variant in alternating(("move", "plain"), repeats + 1):
        seconds = move() if variant == "move" else plain()
        if round_:  # round 0 is the warm-up
            samples[variant].append(seconds)
    return compare(
        f"scale.{name}.lora_slider",
        f"seconds from new slider weights to logits: blend (svd) of {LORA_ADAPTERS} rank-"
        f"{LORA_RANK} adapters on {len(adapters.modules)} modules + one forward under apply_lora",
        samples["move"],
        "plain forward of the same prompt",
        samples["plain"],
        details=shared
        | {
            "paired_ratio_median": paired_ratio(samples["move"], samples["plain"]),
            "blend_seconds_median": round(statistics.median(blend_s[1:] or blend_s), 6),
            "prompt_tokens": int(ids.shape[1]),
        },
    )


def measure_diff(name: str, source: str, shared: dict) -> list[Result]:
    # The sparsity benchmark's own timing (benchmarks/sparsity_diff.py): the diff as the CLI
    # runs it, in a fresh process, its anonymous RSS sampled every 2 ms.
    from benchmarks.sparsity_diff import read_bandwidth_gbs, warm_page_cache
    from benchmarks.sparsity_diff import run_child as diff_child

    base = folder_of(source)
    with tempfile.TemporaryDirectory(prefix="subnetscope-scale-diff-") as tmp:
        tuned = Path(tmp) / "tuned"
        facts = write_tuned_copy(base, tuned)
        files = safetensors_files(base) + safetensors_files(tuned)
        warm_page_cache(files)
        bandwidth = [read_bandwidth_gbs(files)]
        run = diff_child("mapped", base, tuned, Path(tmp))
        bandwidth.append(read_bandwidth_gbs(files))
        total = sum(f.stat().st_size for f in files)
    largest_mb = facts["largest_tensor_bytes"] / 2**20
    details = shared | {
        "bytes_read_gb": round(total / 1e9, 3),
        "largest_tensor_mb": round(largest_mb, 1),
        "tensors": facts["tensors"],
        "planted_fraction": DIFF_FRACTION,
        "diff_seconds": round(run["seconds"], 3),
        "warm_seconds": round(run.get("warm_seconds", 0.0), 2),  # once per process, untimed
        "changed_1e-5": run["changed_1e-5"],
        "vmhwm_growth_mb": round(run["peak_growth_mb"], 1),
        "read_bandwidth_is": "zero-copy mmap pass summing 8-byte words in 4 MiB chunks, warm "
        "page cache, before and after the diff (benchmarks.sparsity_diff.read_bandwidth_gbs)",
    }
    return [
        compare(
            f"scale.{name}.diff.gbps",
            "GB/s of both checkpoints read and diffed by engine.sparsity (masks streamed)",
            [total / run["seconds"] / 1e9],
            "read bandwidth of the same files (mmap pass)",
            bandwidth,
            unit="GB/s",
            details=details,
        ),
        compare(
            f"scale.{name}.diff.peak_anon",
            "peak anonymous RSS growth of the diff, MB",
            [run["anon_growth_mb"]],
            "bytes of the largest tensor, MB",
            [largest_mb],
            unit="MB",
            details=details,
        ),
    ]


def measure_model(name: str, repeats: int, texts: list[str], *, first: bool) -> list[Result]:
    from engine.models import load_model

    source, build_seconds = source_of(name)
    shared = {"model": name, "source": source, "analysis_dtype": DTYPE}
    if build_seconds:
        shared["zoo_build_seconds"] = round(build_seconds, 1)
    results: list[Result] = []
    clock = time.perf_counter()

    def step(what: str, got: Result | list[Result]) -> None:
        nonlocal clock
        now = time.perf_counter()
        for r in got if isinstance(got, list) else [got]:
            r.details["step_seconds"] = round(now - clock, 1)
            results.append(r)
        print(f"    {name}: {what} ({now - clock:.0f} s)", file=sys.stderr, flush=True)
        clock = now

    step("loads", measure_loads(name, source, max(1, repeats - 1), shared))
    loaded = load_model(source, dtype=DTYPE)
    shared |= {"parameters": sum(p.numel() for p in loaded.model.parameters())}
    step("toggle + generate", measure_toggle(name, loaded, repeats, shared))
    step("ICA capture", measure_ica(name, loaded, texts, repeats, shared, spill=first))
    step("LoRA slider", measure_lora(name, loaded, repeats, shared))
    del loaded
    step("LRP", measure_gradient(name, source, repeats, shared))
    step("sparsity diff", measure_diff(name, source, shared))
    return results


@benchmark("scale", repeats=2)
def scale(repeats: int) -> list[Result]:
    """Every view's costly call per model size, each against its plain baseline (issue 19)."""
    from engine.data import load_texts

    texts = load_texts("demo-general", limit=ICA_TEXTS, seed=SEED)
    results: list[Result] = []
    for i, name in enumerate(model_names()):
        results += measure_model(name, repeats, texts, first=i == 0)
    for r in results:
        r.details.setdefault("threads", "torch 1 thread, BLAS 1 thread (runner), children 1")
    return results


if __name__ == "__main__":
    # Child mode: python -m benchmarks.scale load|gradient '<json list of arguments>'
    from engine.runtime import limit_threads

    limit_threads(1)
    print(json.dumps(CHILDREN[sys.argv[1]](*json.loads(sys.argv[2]))))
