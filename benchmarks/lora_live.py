"""LoRA slider-move latency (issue 8): live blend + hooked forward against a merge into weights.

A slider move gives new blend weights for three random rank-8 adapters on every attention and MLP
projection of the demo model. The live path blends their factors (`svd_blend`, `cat_blend`, or
`stacked`: cat's exact sum without its error measurement) and runs one forward pass of a short
prompt under `apply_lora`: the shared model is never written. The baseline is the "reload" path at
its cheapest: the dense update Σ wᵢ sᵢ BᵢAᵢ of every module added to the base weight and copied
into a second copy of the model held in memory (made once, not timed; a real reload from disk
would cost far more), then the same forward pass on that copy. Each round times one move of each
path, in rotating order, after one unmeasured warm-up round.
"""

from __future__ import annotations

import random
import statistics
import sys
import time

import torch

from benchmarks.runner import Result, benchmark, compare
from engine.errors import SubnetScopeError

PROMPT = "The history of the printing press begins in"
RANK = 8
ADAPTERS = 3
KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SEED = 0


def random_adapters(shapes: dict[str, tuple[int, int]], seed: int = SEED) -> list[dict]:
    """ADAPTERS random rank-RANK adapters {module path: Factors}, scale 2 (alpha 16 / r 8)."""
    from engine.lora.lowrank import Factors

    gen = torch.Generator().manual_seed(seed)
    adapters = []
    for _ in range(ADAPTERS):
        factors = {}
        for path, (d_out, d_in) in shapes.items():
            b = torch.randn(d_out, RANK, generator=gen) * 0.02  # (d_out, r)
            a = torch.randn(RANK, d_in, generator=gen) / d_in**0.5  # (r, d_in)
            factors[path] = Factors(b, a, 2.0)
        adapters.append(factors)
    return adapters


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@benchmark("lora_live", repeats=5)
def lora_live(repeats: int) -> list[Result]:
    """Seconds from new slider weights to logits: live blend + hooked forward, against dense merge
    into a model copy + forward."""
    import copy

    from engine.lora.adapters import module_kind, module_shapes
    from engine.lora.live import apply_lora
    from engine.lora.lowrank import cat_blend, stacked, svd_blend
    from engine.models import load_model

    try:
        loaded = load_model("demo")
    except SubnetScopeError as exc:
        print(f"lora_live skipped: the demo model is not available ({exc})", file=sys.stderr)
        return []
    shapes = {
        path: shape
        for path, shape in module_shapes(loaded.model).items()
        if ".layers." in f".{path}" and module_kind(path) in KINDS
    }
    adapters = random_adapters(shapes)
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")["input_ids"].to(loaded.device)  # (1, seq)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    reloaded = copy.deepcopy(loaded.model)  # the "reload" target, held in memory
    modules = {path: reloaded.get_submodule(path) for path in shapes}
    bases = {path: loaded.model.get_submodule(path).weight for path in shapes}
    rng = random.Random(SEED)

    def weights() -> list[float]:
        return [round(rng.uniform(-1.0, 1.0), 3) for _ in range(ADAPTERS)]

    blenders = {  # name -> (factors per adapter, weights) -> blended Factors
        "svd": lambda fs, w: svd_blend(fs, w).factors,
        "cat": lambda fs, w: cat_blend(fs, w).factors,  # exact, with its error measured
        "stacked": stacked,  # exact, no error measurement: the least a slider move needs
    }
    paths = ("svd", "cat", "stacked", "merge")

    def live(w: list[float], blend_fn) -> tuple[float, float, torch.Tensor]:
        _sync(loaded.device)
        started = time.perf_counter()
        blended = {
            path: blend_fn([a[path] for a in adapters], w) for path in shapes
        }  # path -> Factors
        blended_at = time.perf_counter()
        with torch.inference_mode(), apply_lora(loaded, blended):
            logits = loaded.model(ids).logits[0, -1].float()  # (vocab,)
        _sync(loaded.device)
        done = time.perf_counter()
        return done - started, blended_at - started, logits

    def merge(w: list[float]) -> tuple[float, float, torch.Tensor]:
        _sync(loaded.device)
        started = time.perf_counter()
        with torch.inference_mode():
            for path, module in modules.items():
                weight = bases[path]
                delta = sum(
                    (wi * a[path].scale) * (a[path].b.to(weight) @ a[path].a.to(weight))
                    for wi, a in zip(w, adapters, strict=True)
                )  # (d_out, d_in)
                module.weight.copy_(weight + delta)
            _sync(loaded.device)
            merged_at = time.perf_counter()
            logits = reloaded(ids).logits[0, -1].float()  # (vocab,)
        _sync(loaded.device)
        done = time.perf_counter()
        return done - started, merged_at - started, logits

    samples: dict[str, list[float]] = {k: [] for k in paths}
    parts: dict[str, list[float]] = {k: [] for k in paths}
    max_diff = 0.0
    for round_ in range(repeats + 1):  # round 0 is the warm-up
        w = weights()
        shift = round_ % len(paths)
        out = {}
        for name in paths[shift:] + paths[:shift]:
            out[name] = merge(w) if name == "merge" else live(w, blenders[name])
        # cat is exact, so its logits must match the merged model's.
        max_diff = max(max_diff, float((out["cat"][2] - out["merge"][2]).abs().max()))
        if round_ == 0:
            continue
        for name, (total, first_part, _) in out.items():
            samples[name].append(total)
            parts[name].append(first_part)

    after = loaded.model.state_dict()
    shared = {
        "model": loaded.display_name,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype),
        "modules": len(shapes),
        "adapters": ADAPTERS,
        "rank": RANK,
        "prompt_tokens": int(ids.shape[1]),
        "cat_vs_merged_max_abs_logit_diff": round(max_diff, 6),
        "base_weights_bit_identical": all(torch.equal(before[k], after[k]) for k in before),
        "hooks_left_after": sum(len(m._forward_hooks) for m in loaded.model.modules()),
        "merge_seconds_median": round(statistics.median(parts["merge"]), 6),
    }
    results = []
    for name, blend_name in (("svd", "svd_blend"), ("cat", "cat_blend"), ("stacked", "stacked")):
        results.append(
            compare(
                f"lora_live.slider_move.{name}",
                f"seconds from new weights to logits: {blend_name} of {ADAPTERS} rank-{RANK} "
                f"adapters on {len(shapes)} modules + one forward under apply_lora (median)",
                samples[name],
                "dense merge W + ΔW into a model copy + one forward",
                samples["merge"],
                details=shared | {"blend_seconds_median": round(statistics.median(parts[name]), 6)},
            )
        )
    if not shared["base_weights_bit_identical"] or shared["hooks_left_after"]:
        print("warning: lora_live left the shared model changed", file=sys.stderr)
    return results
