"""`python -m engine attribution compute` and `python -m engine prune
select|evaluate|causal|apply`."""

from __future__ import annotations

import argparse

from engine.console import print_json, progress_printer


def _compute(args: argparse.Namespace) -> int:
    from engine.attribution.compute import ComputeConfig, compute_scores

    config = ComputeConfig(
        method=args.method,
        model=args.model,
        samples=args.samples,
        limit=args.limit,
        seed=args.seed,
        max_length=args.max_length,
        generate=args.generate,
        keep_weights=args.keep_weights,
        rules=args.rules,
        dtype=args.dtype,
    )
    if not args.out.endswith(".safetensors"):
        from engine.errors import SubnetScopeError

        raise SubnetScopeError(f"the scores file must end in .safetensors, not '{args.out}'")
    scores = compute_scores(config, progress=progress_printer(args.quiet))
    path = scores.save(args.out)
    meta = scores.metadata
    print(
        f"{config.method} scores of {len(scores.layers)} layers over {meta['texts']} texts "
        f"({meta['tokens']} tokens) → {path}"
    )
    if config.method == "lrp":
        verdict = "conserved" if meta["conserved"] else "NOT conserved"
        print(
            f"conservation: input relevance {meta['input_sum']:.4g} vs explained logits "
            f"{meta['target_sum']:.4g}; gap {meta['conservation_gap']:.2g} of Σ|logit| in "
            f"{meta['precision']} (tolerance {meta['conservation_tolerance']:.2g}): {verdict}"
        )
    return 0


def _select(args: argparse.Namespace) -> int:
    from engine.attribution.pruning import save_neuron_list
    from engine.attribution.scores import (
        average_scores,
        differential,
        load_scores,
        scored_by,
        select_neurons,
    )

    general = scored_by(average_scores([load_scores(f) for f in args.general]), args.score)
    target = scored_by(load_scores(args.target), args.score)
    diff = differential(general, target, args.normalize)
    modules = dict(enumerate(target.metadata.get("up_modules", [])))
    neurons = select_neurons(
        diff,
        args.num_neurons,
        per_layer=args.per_layer,
        layer_pattern=args.layer_pattern,
        module_names=modules,
    )
    save_neuron_list(
        neurons,
        args.out,
        {
            "method": target.method,
            "model": target.metadata.get("model"),
            "general": list(args.general),
            "target": args.target,
            "normalize": args.normalize,
            "score": args.score,
        },
    )
    layers = sorted({n.layer for n in neurons})
    print(f"{len(neurons)} neurons in {len(layers)} layers → {args.out}")
    for n in neurons[:10]:
        print(f"  layer {n.layer:>3}  neuron {n.neuron:>6}  differential {n.score:+.4g}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from engine.attribution.evaluate import EvalConfig, evaluate_pruning
    from engine.attribution.pruning import load_neuron_list
    from engine.models import load_model

    neurons, _ = load_neuron_list(args.neurons)
    config = EvalConfig(
        nums=tuple(args.num),
        prompts=args.prompts,
        text=args.text,
        max_tokens=args.max_tokens,
        scorer=args.scorer,
        max_new_tokens=args.max_new_tokens,
    )
    table = evaluate_pruning(
        load_model(args.model, dtype=args.dtype),
        neurons,
        config,
        progress=progress_printer(args.quiet),
    )
    if args.json:
        print_json(table.to_dict("records"))
        return 0
    print(f"{'N':>5}  {'perplexity':>10}  {'Δppl':>7}  {'toxicity':>8}  {'Δtox':>7}  scorer")
    for r in table.itertuples():
        print(
            f"{r.neurons:>5}  {r.perplexity:>10.3f}  {r.perplexity_change:>+7.1%}  "
            f"{r.toxicity:>8.3f}  {r.toxicity_change:>+7.1%}  {r.scorer}"
        )
    return 0


def _causal(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.attribution.causal import CausalConfig, run_causal
    from engine.attribution.jobs import causal_selections, planted_of
    from engine.errors import SubnetScopeError
    from engine.models import load_model

    selections = causal_selections(args.neurons, args.top)
    truth = [] if args.no_planted else planted_of(args.model)
    if not selections and not truth:
        raise SubnetScopeError("give --neurons (neuron lists) or use the planted model demo-toxic")
    config = CausalConfig(
        prompts=args.prompts,
        max_new_tokens=args.max_new_tokens,
        scorer=args.scorer,
        removal=args.removal,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = run_causal(
        load_model(args.model, dtype=args.dtype),
        selections,
        truth,
        out,
        config,
        progress=progress_printer(args.quiet),
    )
    print(
        f"baseline toxicity {summary['baseline']['toxicity']:.3f}; "
        f"{summary['causal_size']} of {summary['candidates']} candidates form the causal set "
        f"(removes ≥ {config.removal:.0%}) → {out}"
    )
    return 0


def _apply(args: argparse.Namespace) -> int:
    from engine.attribution.pruning import load_neuron_list, save_pruned_model

    neurons, meta = load_neuron_list(args.neurons)
    chosen = neurons[: args.num] if args.num is not None else neurons
    out = save_pruned_model(args.model, chosen, args.out, {"neuron_list": meta.get("path")})
    print(f"pruned {len(chosen)} neurons of {args.model} → {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.attribution.config import ComputeConfig, EvalConfig
    from engine.models.cli import dtype_argument

    attribution = subparsers.add_parser("attribution")
    sub = attribution.add_subparsers(dest="attribution_command", required=True)
    compute = sub.add_parser("compute", help="score every up_proj neuron over a text source")
    d = ComputeConfig()
    compute.add_argument("--method", choices=("lrp", "wanda"), default=d.method)
    compute.add_argument("--model", default=d.model)
    compute.add_argument("--samples", default=d.samples, help="text source")
    compute.add_argument("--limit", type=int, default=d.limit, help="texts drawn")
    compute.add_argument("--seed", type=int, default=d.seed)
    compute.add_argument("--max-length", type=int, default=d.max_length)
    compute.add_argument(
        "--generate",
        type=int,
        default=0,
        help="append the model's own continuation of N tokens first",
    )
    compute.add_argument("--keep-weights", action="store_true", help="also save |W ⊙ ∂W|")
    compute.add_argument(
        "--rules",
        choices=("cp", "attn"),
        default="cp",
        help="LRP rules: CP-LRP (conservative) or AttnLRP",
    )
    compute.add_argument("--out", required=True, help="scores file (.safetensors)")
    compute.add_argument("--quiet", action="store_true")
    dtype_argument(compute)  # LRP: auto is fp32 (engine/attribution/lxt_compat.py)
    compute.set_defaults(handler=_compute)

    prune = subparsers.add_parser("prune")
    sub = prune.add_subparsers(dest="prune_command", required=True)
    select = sub.add_parser("select", help="differential scores → the most target-specific")
    select.add_argument("--general", nargs="+", required=True, help="general score files (seeds)")
    select.add_argument("--target", required=True, help="target score file")
    select.add_argument("--num-neurons", type=int, default=100)
    select.add_argument("--per-layer", action="store_true")
    select.add_argument("--layer-pattern", default="up_proj")
    select.add_argument("--normalize", choices=("none", "sum", "tokens", "ratio"), default="none")
    select.add_argument(
        "--score",
        choices=("weights", "relevance"),
        default="weights",
        help="LRP neuron score: Σ|W ⊙ ∂W| (seed 002) or |net relevance| (finds more)",
    )
    select.add_argument("--out", required=True, help="neuron list (.json)")
    select.set_defaults(handler=_select)
    e = EvalConfig()
    evaluate = sub.add_parser("evaluate", help="perplexity and toxicity for several N")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--neurons", required=True)
    evaluate.add_argument("--num", type=int, nargs="+", default=list(e.nums))
    evaluate.add_argument("--prompts", default=e.prompts)
    evaluate.add_argument("--text", default=e.text)
    evaluate.add_argument("--max-tokens", type=int, default=e.max_tokens)
    evaluate.add_argument("--max-new-tokens", type=int, default=e.max_new_tokens)
    evaluate.add_argument("--scorer", default=e.scorer)
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--quiet", action="store_true")
    dtype_argument(evaluate)
    evaluate.set_defaults(handler=_evaluate)
    causal = sub.add_parser("causal", help="ablation effects: which neurons carry the behaviour")
    causal.add_argument("--model", default="demo-toxic")
    causal.add_argument("--neurons", nargs="*", default=[], help="neuron lists / SparC3 folders")
    causal.add_argument("--top", type=int, default=100, help="first N of each list")
    causal.add_argument("--no-planted", action="store_true", help="skip a planted model's list")
    causal.add_argument("--prompts", default=e.prompts)
    causal.add_argument("--max-new-tokens", type=int, default=e.max_new_tokens)
    causal.add_argument("--scorer", default=e.scorer)
    causal.add_argument(
        "--removal",
        type=float,
        default=0.9,
        help="causal set: the shortest prefix that removes this share of the toxicity",
    )
    causal.add_argument("--out", required=True, help="folder for the tables")
    causal.add_argument("--quiet", action="store_true")
    dtype_argument(causal)
    causal.set_defaults(handler=_causal)
    apply = sub.add_parser("apply", help="save a permanently pruned model folder")
    apply.add_argument("--model", required=True)
    apply.add_argument("--neurons", required=True)
    apply.add_argument("--num", type=int, help="prune only the first N listed")
    apply.add_argument("--out", required=True)
    apply.set_defaults(handler=_apply)
