"""Job kind `neurons.activations` (every neuron's stats and top snippets)."""

from __future__ import annotations

from typing import Any

from engine.errors import SubnetScopeError
from engine.jobs import JobContext, job
from engine.models.precision import dtype_choice
from engine.neurons.config import KIND

DEFAULTS = {
    "model": "demo",
    "dataset": "demo-general",
    "samples": 200,
    "max_length": 64,
    "top_k": 5,
    "batch_size": 8,
    "seed": 0,
    "dtype": "auto",
}


@job(
    KIND,
    title="Neuron activations: stats and top snippets of every MLP neuron",
    result_page="passport",
    defaults=DEFAULTS,
    mem_gb=2.0,  # measured on the demo model: 1.32 GB peak (VmHWM)
)
def activations_job(params: dict[str, Any], ctx: JobContext) -> dict:
    """Stream `samples` texts of `dataset` through `model`; save stats and snippets."""
    from engine.data import load_texts
    from engine.models import load_model
    from engine.neurons.activations import compute_activation_stats, save_activation_stats

    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise SubnetScopeError(
            f"unknown option {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}"
        )
    p = {**DEFAULTS, **params}
    if int(p["samples"]) < 1:
        raise SubnetScopeError(f"samples must be ≥ 1, not {p['samples']}")
    dtype = dtype_choice(p["dtype"])
    ctx.progress(0.0, f"loading {p['model']} ({dtype})")
    loaded = load_model(str(p["model"]), dtype=dtype)
    ctx.progress(0.03, f"reading {p['dataset']}")
    texts = load_texts(str(p["dataset"]), limit=int(p["samples"]), seed=int(p["seed"]))
    stats = compute_activation_stats(
        loaded,
        texts,
        top_k=int(p["top_k"]),
        max_length=int(p["max_length"]),
        batch_size=int(p["batch_size"]),
        progress=lambda fraction, message: ctx.progress(0.05 + 0.9 * fraction, message),
    )
    stats.meta.update(
        model=p["model"],
        dataset=p["dataset"],
        samples=int(p["samples"]),
        seed=int(p["seed"]),
        dtype=str(loaded.dtype).removeprefix("torch."),  # what `dtype` resolved to
    )
    folder = save_activation_stats(stats, ctx.result_dir)
    meta = stats.meta
    ctx.metric("tokens", meta["tokens"])
    ctx.metric("seconds", meta["seconds"])
    ctx.progress(1.0, f"{meta['tokens']} tokens, {len(stats.stats)} neurons")
    return {
        "folder": str(folder),
        "model": meta["model"],
        "dtype": meta["dtype"],
        "neurons": len(stats.stats),
        "layers": len(meta["neurons_per_layer"]),
        "texts": meta["texts"],
        "tokens": meta["tokens"],
        "seconds": meta["seconds"],
    }
