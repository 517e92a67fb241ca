"""The whole SparC3 pipeline as one run: attribute general text over several seeds and the target
prompts, take the differential, select the most target-specific neurons, evaluate their pruning.

Writes into `out/`: `general_seed<s>.safetensors`, `target.safetensors`, Wanda's
`wanda_general.safetensors` and `wanda_target.safetensors`, `neurons.json`, `candidates.parquet`,
`evaluation.parquet` and `sparc3.json` (the summary: with precision / recall of each method's
selection against the planted neurons and, with `causal`, against the measured causal set), Wanda's
own selection `wanda_neurons.json`, and with `causal` the ablation tables of `causal.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from engine.atomic import write_json_atomic, write_parquet_atomic
from engine.attribution.compute import compute_scores
from engine.attribution.config import SUMMARY, ComputeConfig, EvalConfig, SparC3Config
from engine.attribution.evaluate import evaluate_pruning
from engine.attribution.planted import planted_of
from engine.attribution.pruning import save_neuron_list
from engine.attribution.scores import (
    AttributionScores,
    average_scores,
    differential,
    scored_by,
    select_neurons,
)
from engine.models.sources import named_source

Progress = Callable[[float, str], None]
WANDA_NEURONS = "wanda_neurons.json"


def candidate_table(
    general: AttributionScores,
    target: AttributionScores,
    diff: AttributionScores,
    wanda_diff: AttributionScores | None = None,
    top: int = 1000,
    normalize: str = "none",
) -> pd.DataFrame:
    """The `top` most target-specific neurons: layer, neuron, R_general, R_target, differential
    (and Wanda's differential), most negative first."""
    from engine.attribution.scores import normalized

    g, t = normalized(general, normalize), normalized(target, normalize)
    chosen = select_neurons(diff, top)
    rows = [
        {
            "rank": i + 1,
            "layer": s.layer,
            "neuron": s.neuron,
            "R_general": float(g[s.layer][s.neuron]),
            "R_target": float(t[s.layer][s.neuron]),
            "differential": s.score,
        }
        for i, s in enumerate(chosen)
    ]
    table = pd.DataFrame(rows)
    if wanda_diff is not None and not table.empty:
        table["wanda"] = [float(wanda_diff.neuron[r.layer][r.neuron]) for r in table.itertuples()]
        order = sorted(
            (
                (float(v), layer, n)
                for layer, vs in wanda_diff.neuron.items()
                for n, v in enumerate(vs.tolist())
            )
        )
        rank = {(layer, n): i + 1 for i, (_, layer, n) in enumerate(order)}
        table["wanda_rank"] = [rank[(r.layer, r.neuron)] for r in table.itertuples()]
    return table


def ensure_model(source: str, progress: Progress) -> None:
    """A named source (the demo's planted model) is built on first use."""
    named = named_source(source)
    if named is not None:
        named.build(lambda f, m: progress(0.25 * f, f"planting: {m}"))


def run_sparc3(config: SparC3Config, out: Path, progress: Progress | None = None) -> dict:
    report = progress or (lambda fraction, message: None)
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    ensure_model(config.model, report)
    loaded = _load(config)
    dtype_used = str(loaded.dtype).removeprefix("torch.")
    runs = [("general", seed) for seed in config.general_seeds] + [("target", None)]
    span = 0.6 / (len(runs) + 2)

    def stage(i: int, what: str) -> Progress:
        return lambda f, m: report(0.25 + span * (i + f), f"{what}: {m}")

    general = []
    for i, (kind, seed) in enumerate(runs):
        source = config.general if kind == "general" else config.target
        compute = ComputeConfig(
            method=config.method,
            model=config.model,
            samples=source,
            limit=config.general_samples if kind == "general" else config.target_samples,
            seed=seed or 0,
            max_length=config.max_length,
            generate=0 if kind == "general" else config.generate,
            rules=config.rules,
            dtype=config.dtype,
        )
        scores = compute_scores(compute, loaded=loaded, progress=stage(i, f"{kind} {seed or ''}"))
        name = f"general_seed{seed}" if kind == "general" else "target"
        scores.save(out / f"{name}.safetensors")
        if kind == "general":
            general.append(scores)
        else:
            target = scores
    general_raw, target_raw = average_scores(general), target
    general_mean, target = scored_by(general_raw, config.score), scored_by(target, config.score)
    diff = differential(general_mean, target, config.normalize)
    wanda = _wanda(config, loaded, out, stage(len(runs), "wanda"))
    wanda_diff = differential(*wanda, config.normalize) if wanda else None
    modules = {i: name for i, name in enumerate(target.metadata.get("up_modules", []))}
    neurons = select_neurons(
        diff,
        config.num_neurons,
        per_layer=config.per_layer,
        layer_pattern=config.layer_pattern,
        module_names=modules,
    )
    summary: dict[str, Any] = {
        "config": config.to_params(),
        "model_name": loaded.display_name,
        "dtype": dtype_used,
    }
    summary |= _planted_overlap(config.model, neurons)
    wanda_neurons = (
        select_neurons(
            wanda_diff,
            config.num_neurons,
            per_layer=config.per_layer,
            layer_pattern=config.layer_pattern,
            module_names=modules,
        )
        if wanda_diff is not None
        else []
    )
    if wanda_neurons:
        meta = {"method": "wanda", "model": config.model, "normalize": config.normalize}
        save_neuron_list(wanda_neurons, out / WANDA_NEURONS, meta)
    save_neuron_list(
        neurons,
        out / "neurons.json",
        {
            "method": config.method,
            "model": config.model,
            "normalize": config.normalize,
            "score": config.score,
            "general": config.general,
            "target": config.target,
            "seeds": list(config.general_seeds),
        },
    )
    candidates = candidate_table(general_mean, target, diff, wanda_diff, normalize=config.normalize)
    write_parquet_atomic(out / "candidates.parquet", candidates, index=False)
    if config.evaluate:
        evaluation = evaluate_pruning(
            loaded,
            neurons,
            EvalConfig(
                nums=tuple(n for n in config.eval_nums if n <= len(neurons)),
                prompts=config.eval_prompts,
                text=config.eval_text,
                max_tokens=config.eval_max_tokens,
                scorer=config.scorer,
            ),
            progress=lambda f, m: report(0.85 + 0.15 * f, f"evaluating: {m}"),
        )
        write_parquet_atomic(out / "evaluation.parquet", evaluation, index=False)
        summary["evaluation"] = evaluation.drop(columns=["example"]).to_dict("records")
    planted = planted_of(config.model)
    truths = {"planted": planted} if planted else {}
    selections = {_label(config.method, config.score, config.normalize): neurons}
    if config.method == "lrp" and (config.score, config.normalize) != ("weights", "none"):
        # seed 002's own selection from the same runs, for comparison
        seed = select_neurons(
            differential(general_raw, target_raw, "none"),
            config.num_neurons,
            per_layer=config.per_layer,
            layer_pattern=config.layer_pattern,
            module_names=modules,
        )
        selections[_label("lrp", "weights", "none")] = seed
    if wanda_neurons:
        selections[_label("wanda", "weights", config.normalize)] = wanda_neurons
    if config.causal:
        from engine.attribution.causal import CausalConfig, run_causal

        causal = run_causal(
            loaded,
            selections,
            truths.get("planted", []),
            out,
            CausalConfig(prompts=config.eval_prompts, scorer=config.scorer),
            progress=lambda f, m: report(0.9 + 0.1 * f, f"causal: {m}"),
        )
        truths["causal"] = causal["causal"]
        summary["causal"] = {k: v for k, v in causal.items() if k != "causal"}
    summary["recovery"] = _recovery(selections, truths)
    summary["seconds"] = round(time.monotonic() - started, 1)
    write_json_atomic(out / SUMMARY, summary)  # last: a reader that sees it finds the rest
    return summary


def _load(config: SparC3Config):
    if config.method == "lrp":
        from engine.attribution.lxt_compat import load_for_lrp

        return load_for_lrp(config.model, rules=config.rules, dtype=config.dtype)
    from engine.models import load_model

    return load_model(config.model, dtype=config.dtype)


def _wanda(config: SparC3Config, loaded, out: Path, report: Progress):
    """Wanda's general and target scores beside the main method (forward passes only); the
    general scores are averaged over the same seeds as the main method's (seed 002)."""
    from engine.attribution.scores import average_scores
    from engine.attribution.wanda import wanda_scores
    from engine.data import load_texts

    if config.method == "wanda":
        return None
    per_seed = []
    for seed in config.general_seeds:
        general = load_texts(config.general, limit=config.general_samples, seed=seed)
        per_seed.append(wanda_scores(loaded, general, max_length=config.max_length))
    g = average_scores(per_seed)
    target = load_texts(config.target, limit=config.target_samples)
    report(0.5, "general done")
    t = wanda_scores(loaded, target, max_length=config.max_length)
    g.save(out / "wanda_general.safetensors")
    t.save(out / "wanda_target.safetensors")
    return g, t


def _label(method: str, score: str, normalize: str) -> str:
    """How a selection is named in the recovery table, e.g. "lrp (weights, none)"."""
    return f"wanda ({normalize})" if method == "wanda" else f"{method} ({score}, {normalize})"


def _recovery(selections: dict[str, list], truths: dict[str, list]) -> list[dict[str, Any]]:
    """Precision and recall of each method's selection against each known truth."""
    from engine.attribution.causal import recovery

    return [
        {
            "method": method,
            "truth": truth,
            **recovery([(n.layer, n.neuron) for n in chosen], wanted),
        }
        for method, chosen in selections.items()
        for truth, wanted in truths.items()
    ]


def _planted_overlap(model: str, neurons) -> dict[str, Any]:
    """For the planted demo: how many selected neurons are the planted ones (known answer)."""
    planted = set(planted_of(model))
    if not planted:
        return {}
    found = sum((n.layer, n.neuron) in planted for n in neurons)
    return {"planted": len(planted), "planted_found": found}
