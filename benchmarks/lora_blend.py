"""SVD blend of three rank-16 LoRA adapters on one d×d module: our exact low-rank path (QR of the
stacked factors, SVD of the small core) against PEFT's add_weighted_adapter(..., "svd"), which
forms the dense d×d update and runs a full SVD.

Both go through `engine.lora.blend.blend` (engine "auto" and "peft"); the timed part is the blend
itself (for PEFT: its skeleton PeftModel, loading the factors and add_weighted_adapter), not the
error measurement. Each blend's relative error against the exact rank-16 truncation of
Σ wᵢ·sᵢ·BᵢAᵢ is reported (both are that truncation; what remains is rounding), with the distance
between the two results. Sizes: `SUBNETSCOPE_BENCH_LORA_SIZES` (default "2048,4096"); PEFT's dense
SVD at 4096 takes ~20 s on one core, so the 4096 size runs PEFT once.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from benchmarks.runner import Result, benchmark, compare

SIZES_ENV = "SUBNETSCOPE_BENCH_LORA_SIZES"
DEFAULT_SIZES = "2048,4096"
RANK = 16
WEIGHTS = (0.5, 0.3, -0.2)
ALPHA = 32
SEED = 0
ONE_PEFT_RUN_FROM = 4096  # PEFT's dense SVD is slow here: one sample is enough


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{SIZES_ENV} must be sizes like 2048,4096, not {text!r}") from None
    if not sizes or min(sizes) < RANK:
        raise ValueError(f"{SIZES_ENV}={text!r}: sizes must be at least {RANK}")
    return sizes


def adapter_set(d: int, seed: int = SEED):
    """Three rank-16 adapters on one d×d module, float32, like trained ones (B and A random)."""
    from engine.lora.adapters import AdapterInfo, AdapterSet, LoraAdapter
    from engine.lora.lowrank import Factors, lora_scale

    module = "model.layers.0.self_attn.q_proj"
    generator = torch.Generator().manual_seed(seed)
    adapters = []
    for i in range(len(WEIGHTS)):
        a = torch.randn(RANK, d, generator=generator) / d**0.5  # (r, d)
        b = torch.randn(d, RANK, generator=generator) * 0.01  # (d, r)
        scale = lora_scale(ALPHA, RANK)
        info = AdapterInfo(
            name=f"a{i}",
            path=Path(f"a{i}"),
            base_model=None,
            rank=RANK,
            alpha=ALPHA,
            use_rslora=False,
            use_dora=False,
            scaling=scale,
            target_modules=("q_proj",),
            modules=(module,),
            rank_pattern={},
            alpha_pattern={},
        )
        adapters.append(LoraAdapter(info, {module: Factors(b, a, scale)}))
    return AdapterSet(tuple(adapters), (module,))


@benchmark("lora_blend", repeats=3)
def lora_blend(repeats: int) -> list[Result]:
    """Seconds of an svd blend, ours against PEFT's add_weighted_adapter, per module size."""
    from engine.lora.blend import BlendSpec, blend
    from engine.lora.lowrank import difference_norm, frobenius

    size_text = os.environ.get(SIZES_ENV, DEFAULT_SIZES)
    results = []
    for d in parse_sizes(size_text):
        adapters = adapter_set(d)
        ours_spec = BlendSpec(WEIGHTS, "svd", rank=RANK)
        peft_spec = BlendSpec(WEIGHTS, "svd", rank=RANK, engine="peft")
        blend(adapters, ours_spec)  # warm-up (imports, allocator)
        ours, theirs = [], []
        peft_runs = 1 if d >= ONE_PEFT_RUN_FROM else repeats
        for i in range(repeats):
            ours.append(blend(adapters, ours_spec))
            if i < peft_runs:
                theirs.append(blend(adapters, peft_spec))
        module = adapters.modules[0]
        ours_f, theirs_f = ours[-1].factors[module], theirs[-1].factors[module]
        between = difference_norm(ours_f, theirs_f) / frobenius(ours_f)
        results.append(
            compare(
                f"lora_blend.svd_{d}",
                f"seconds of our low-rank svd blend, 3 rank-{RANK} adapters on {d}×{d} (median)",
                [r.seconds for r in ours],
                "PEFT add_weighted_adapter(combination_type='svd') (dense d×d thin SVD)",
                [r.seconds for r in theirs],
                details={
                    "size": d,
                    "rank": RANK,
                    "weights": list(WEIGHTS),
                    "dtype": "float32",
                    "speedup_peft_over_ours": round(
                        sorted(r.seconds for r in theirs)[len(theirs) // 2]
                        / sorted(r.seconds for r in ours)[len(ours) // 2],
                        1,
                    ),
                    "ours_error": ours[-1].error,
                    "peft_error": theirs[-1].error,
                    "truncation": ours[-1].truncation_total,
                    "ours_minus_exact_truncation": ours[-1].error - ours[-1].truncation_total,
                    "peft_minus_exact_truncation": theirs[-1].error - theirs[-1].truncation_total,
                    "ours_vs_peft_relative": between,
                    "peft_runs": len(theirs),
                    "sizes_env": f"{SIZES_ENV}={size_text}",
                },
            )
        )
    return results
