"""Job kinds of the pruning view: attribution runs, pruning evaluations, the SparC3 pipeline and
the causal check."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from engine.attribution.config import (
    SUMMARY,
    CausalConfig,
    ComputeConfig,
    EvalConfig,
    SparC3Config,
)
from engine.attribution.planted import planted_of
from engine.errors import SubnetScopeError
from engine.jobs import JobContext, job
from engine.models.precision import dtype_choice

SCORES_FILE = "scores.safetensors"


def _dtype(params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The params without `dtype`, and the dtype choice it names (one clear error otherwise)."""
    params = dict(params)
    return params, dtype_choice(params.pop("dtype", None))


def _used(loaded) -> str:
    return str(loaded.dtype).removeprefix("torch.")


def _config(cls, params: dict[str, Any], what: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise SubnetScopeError(f"{what}: unknown option {', '.join(unknown)}")
    return cls(**params)


@job(
    "attribution.compute",
    title="Attribution scores (LRP or Wanda)",
    result_page="pruning",
    defaults=asdict(ComputeConfig()),
)
def attribution_compute(params: dict[str, Any], ctx: JobContext) -> dict:
    """Per up_proj neuron scores over a text source; LRP patches torch in this process only
    (its `dtype` auto is float32: engine/attribution/lxt_compat.py)."""
    from engine.attribution.compute import compute_scores

    config = _config(ComputeConfig, params, "attribution.compute")
    scores = compute_scores(config, progress=ctx.progress)
    path = scores.save(ctx.result_path(SCORES_FILE))
    meta = scores.metadata
    return {
        "scores": str(path),
        "method": config.method,
        "tokens": meta["tokens"],
        "dtype": meta["dtype_used"],
    }


@job(
    "prune.evaluate",
    title="Pruning evaluation: perplexity and toxicity per N",
    result_page="pruning",
    defaults={
        "model": "demo-toxic",
        "neurons": None,
        "dtype": "auto",
        **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(EvalConfig()).items()},
    },
)
def prune_evaluate(params: dict[str, Any], ctx: JobContext) -> dict:
    """Perplexity and completion toxicity with the first N listed neurons pruned, for each N."""
    from engine.attribution.evaluate import evaluate_pruning
    from engine.attribution.pruning import load_neuron_list
    from engine.models import load_model

    params, dtype = _dtype(params)
    model, neuron_file = params.pop("model"), params.pop("neurons")
    if not neuron_file:
        raise SubnetScopeError("prune.evaluate needs 'neurons': a neuron list file")
    config = _config(
        EvalConfig, {**params, "nums": tuple(params.get("nums", ()))}, "prune.evaluate"
    )
    neurons, _ = load_neuron_list(neuron_file)
    ctx.progress(0.0, f"loading {model} ({dtype})")
    loaded = load_model(model, dtype=dtype)
    table = evaluate_pruning(loaded, neurons, config, progress=ctx.progress)
    ctx.write_table("evaluation.parquet", table)
    for row in table.itertuples():
        ctx.metric("perplexity", row.perplexity, step=row.neurons)
        ctx.metric("toxicity", row.toxicity, step=row.neurons, scorer=row.scorer)
    records = table.drop(columns=["example"]).to_dict("records")
    used = _used(loaded)
    ctx.write_json(
        "evaluation.json", {"model": model, "neurons": neuron_file, "dtype": used, "rows": records}
    )
    return {"rows": records, "dtype": used}


@job(
    "prune.sparc3",
    title="SparC3: attribute, select and prune target-specific neurons",
    result_page="pruning",
    defaults=SparC3Config().to_params(),
)
def prune_sparc3(params: dict[str, Any], ctx: JobContext) -> dict:
    """The whole pipeline: general seeds and target scores, differential, top-N, evaluation.
    It loads the model itself in `dtype` (LRP: auto is float32) and reports the dtype it ran in."""
    from engine.attribution.sparc3 import run_sparc3

    config = SparC3Config.from_params(params)
    summary = run_sparc3(config, ctx.result_dir, progress=ctx.progress)
    for row in summary.get("evaluation", []):
        ctx.metric("perplexity", row["perplexity"], step=row["neurons"])
        ctx.metric("toxicity", row["toxicity"], step=row["neurons"], scorer=row["scorer"])
    ctx.result_path(SUMMARY)  # written by run_sparc3; listed in the manifest
    keep = ("planted", "planted_found", "evaluation", "seconds", "dtype")
    return {k: summary[k] for k in keep if k in summary}


@job(
    "prune.causal",
    title="Which neurons carry the behaviour: ablation effects",
    result_page="pruning",
    defaults={
        "model": "demo-toxic",
        "neurons": [],
        "top": 100,
        "planted": True,
        "dtype": "auto",
        **asdict(CausalConfig()),
    },
)
def prune_causal(params: dict[str, Any], ctx: JobContext) -> dict:
    """Ablate the listed neurons (and a planted model's) singly, by layer and cumulatively."""
    from engine.attribution.causal import run_causal
    from engine.models import load_model

    params, dtype = _dtype(params)
    model, files = params.pop("model"), params.pop("neurons") or []
    top, planted = int(params.pop("top")), bool(params.pop("planted"))
    config = _config(CausalConfig, params, "prune.causal")
    selections = causal_selections([files] if isinstance(files, str) else list(files), top)
    truth = planted_of(model) if planted else []
    if not selections and not truth:
        raise SubnetScopeError("prune.causal needs 'neurons' (neuron lists) or a planted model")
    ctx.progress(0.0, f"loading {model} ({dtype})")
    loaded = load_model(model, dtype=dtype)
    summary = run_causal(loaded, selections, truth, ctx.result_dir, config, progress=ctx.progress)
    ctx.result_path("causal.json")  # written by run_causal; listed in the manifest
    return {
        "causal_size": summary["causal_size"],
        "baseline": summary["baseline"],
        "dtype": _used(loaded),
    }


def causal_selections(files: list[str], top: int) -> dict[str, list]:
    """Each neuron list (or SparC3 result folder's neurons.json), its first `top`, by name."""
    from pathlib import Path

    from engine.attribution.pruning import load_neuron_list

    chosen = {}
    for file in files:
        neurons, meta = load_neuron_list(file)
        name = str(meta.get("method") or Path(file).stem)
        while name in chosen:
            name += "'"
        chosen[name] = neurons[:top]
    return chosen
