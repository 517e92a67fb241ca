"""`python -m engine models ...`: inspect and run language models."""

from __future__ import annotations

import argparse
import sys

from engine.console import print_json, progress_printer


def _inspect(args: argparse.Namespace) -> int:
    from engine.models.loading import load_model
    from engine.models.summary import architecture_facts

    loaded = load_model(args.source, trust_remote_code=args.trust_remote_code, dtype=args.dtype)
    facts = architecture_facts(loaded)
    if args.json:
        print_json(facts)
        return 0
    width = facts["intermediate_size"]
    print(f"{facts['name']}  ({facts['model_class']}, {facts['architecture']})")
    print(
        f"  layers {facts['num_layers']}  hidden {facts['hidden_size']}  MLP neurons/layer {width}"
    )
    print(
        f"  parameters {facts['num_parameters']:,}  dtype {facts['dtype']}"
        f"  device {facts['device']}"
    )
    first = facts["layers"][0]
    print(f"  layer 0: up={first['up']} gate={first['gate']} down={first['down']}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from engine.errors import SubnetScopeError
    from engine.models.generation import generate_text
    from engine.models.loading import load_model
    from engine.models.masks import load_mask

    if not args.sbd and (args.json or args.ntp_first or args.template):
        raise SubnetScopeError("--json, --template and --ntp-first go with --sbd")
    if args.sbd and args.temperature > 0:
        raise SubnetScopeError("SBD decoding is greedy (argmax); drop --temperature or --sbd")
    mask = load_mask(args.mask) if args.mask else None
    loaded = load_model(args.source, trust_remote_code=args.trust_remote_code, dtype=args.dtype)
    chat = {"auto": None, "on": True, "off": False}[args.chat]
    if args.sbd:
        return _generate_sbd(args, loaded, chat, mask)
    result = generate_text(
        loaded,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        mask=mask,
        chat=chat,
        temperature=args.temperature,
        seed=args.seed,
    )
    print(result.text)
    return 0


def _generate_sbd(args: argparse.Namespace, loaded, chat: bool | None, mask) -> int:
    """Set Block Decoding (engine.models.sbd_decoding): the text and its forward passes."""
    from dataclasses import asdict

    from engine.models.sbd_decoding import sbd_generate

    prompt = args.prompt
    if args.template:
        from engine.data.formats import Example, format_prompt

        prompt = format_prompt(Example(args.prompt, ""), args.template, loaded.tokenizer)
        chat = False
    result = sbd_generate(
        loaded,
        prompt,
        block_size=args.block_size,
        threshold=args.threshold,
        max_new_tokens=args.max_new_tokens,
        chat=chat,
        mask=mask,
        ntp_first=args.ntp_first,
    )
    if args.json:
        print_json({**asdict(result), "tokens_per_forward": result.tokens_per_forward})
        return 0
    print(result.text)
    eos = " and the end-of-sequence token" if result.stopped_at_eos else ""
    print(
        f"{len(result.token_ids)} new tokens{eos} in {result.forwards} forward passes (the "
        f"prompt's included): {result.tokens_per_forward:.2f} tokens/forward; "
        f"k = {result.block_size}, γ = {result.threshold:g}, {result.seconds:.2f} s",
        file=sys.stderr,
    )
    return 0


def _plan(args: argparse.Namespace) -> int:
    from engine.models.loading import plan_load
    from engine.models.memory import GB, free_bytes

    plan = plan_load(args.source, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    free = free_bytes(plan.device)
    fits = plan.fits(free)
    costs = _costs(args, plan) if args.analyses else []
    if args.json:
        extra = {"analyses": [c.to_json() for c in costs]} if args.analyses else {}
        print_json({**plan.to_json(), "free_bytes": free, "fits": fits, **extra})
        return 0
    print(f"{plan.source}  ({plan.model_type}, on {plan.device})")
    print(f"  {plan.describe()}")
    print(
        f"  needs {plan.total_bytes / GB:.2f} GB; {free / GB:.1f} GB free: "
        + ("fits" if fits else "would NOT fit")
    )
    for cost in costs:
        print(
            f"  {cost.analysis:<27} {cost.flops / 1e12:8.1f} TFLOP  "
            f"reads {cost.bytes_read / GB:7.1f} GB  "
            f"peak {cost.memory_bytes / GB:7.1f} GB  {cost.note}"
        )
    return 0


def _costs(args: argparse.Namespace, plan) -> list:
    from engine.models.costs import Shape, analysis_costs
    from engine.models.loading import source_config

    config = source_config(args.source, trust_remote_code=args.trust_remote_code)
    bytes_per_weight = plan.weight_bytes // plan.parameters
    return analysis_costs(Shape.of(config, plan.parameters), b=bytes_per_weight)


def _zoo(args: argparse.Namespace) -> int:
    from engine.models.memory import GB
    from engine.models.zoo import ZOO, build_zoo_model, zoo_dir, zoo_plan, zoo_ready

    if args.build:
        for name in args.build:
            path = build_zoo_model(name, device=args.device, progress=progress_printer(False))
            print(f"{name}: {path}")
        return 0
    rows = []
    for name, spec in ZOO.items():
        plan = zoo_plan(name, "bf16", args.device)
        rows.append(
            {
                "name": name,
                "source": f"zoo/{name}",
                "mirrors": spec.mirrors,
                "parameters": plan.parameters,
                "bf16_gb": round(plan.weight_bytes / GB, 2),
                "load_gb": round(plan.total_bytes / GB, 2),
                "built": zoo_ready(name),
                "tested_here": spec.buildable_here,
                "folder": str(zoo_dir(name)),
                "note": spec.note,
            }
        )
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        state = "built" if row["built"] else "not built" if row["tested_here"] else "plan only"
        print(
            f"{row['source']:<24} {row['parameters'] / 1e9:5.2f}B  bf16 {row['bf16_gb']:6.2f} GB"
            f"  load {row['load_gb']:6.2f} GB  {state:<9}  {row['mirrors']}"
        )
    return 0


def dtype_argument(parser: argparse.ArgumentParser) -> None:
    """`--dtype {auto,bf16,fp16,fp32}` (default auto) on a command that loads a model."""
    from engine.models.precision import DTYPE_CHOICES

    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="auto",
        help="auto: the checkpoint's own dtype where the device computes in it, else fp32",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models")
    sub = models.add_subparsers(dest="command", metavar="COMMAND", required=True)

    source_help = "'demo', a model folder, a .gguf file or a hub id (online only)"
    inspect = sub.add_parser("inspect", help="architecture, sizes and MLP module names")
    inspect.add_argument("source", help=source_help)
    inspect.add_argument("--json", action="store_true", help="print the facts as JSON")
    inspect.add_argument("--trust-remote-code", action="store_true", help="run the repo's code")
    dtype_argument(inspect)
    inspect.set_defaults(handler=_inspect)

    plan = sub.add_parser(
        "plan", help="the memory a load will need, from the config alone (reads no weights)"
    )
    plan.add_argument("source", help=source_help)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--analyses",
        action="store_true",
        help="also what each analysis needs (FLOPs, bytes, peak memory; docs/scale.md)",
    )
    plan.add_argument("--trust-remote-code", action="store_true", help="run the repo's code")
    dtype_argument(plan)
    plan.set_defaults(handler=_plan)

    generate = sub.add_parser("generate", help="generate text, optionally with a neuron mask")
    generate.add_argument("source", help=source_help)
    generate.add_argument("--prompt", required=True, help="the user prompt")
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--mask", help="JSON mask file ({mode, neurons:[{layer, neuron}]})")
    generate.add_argument(
        "--chat",
        choices=("auto", "on", "off"),
        default="auto",
        help="use the tokenizer's chat template (auto: when it has one)",
    )
    generate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    generate.add_argument("--seed", type=int, default=0)
    sbd = generate.add_argument_group(
        "Set Block Decoding (an SBD-trained model: `python -m engine sbd train`)"
    )
    sbd.add_argument(
        "--sbd",
        action="store_true",
        help="decode blocks of k slots, several tokens per pass",
    )
    sbd.add_argument("--block-size", type=int, default=16, help="k: slots per block")
    sbd.add_argument(
        "--threshold",
        type=float,
        default=0.35,
        help="γ (nats): reveal the most slots whose entropies, all but the largest, sum to ≤ γ",
    )
    sbd.add_argument(
        "--template",
        help="render --prompt as an instruction in this template, as `sbd train` did (auto, "
        "chat, alpaca, chatml, basic; the demo's run: basic)",
    )
    sbd.add_argument(
        "--ntp-first", action="store_true", help="each block's first slot from the next-token logit"
    )
    sbd.add_argument(
        "--json", action="store_true", help="print the generation as JSON (with the passes)"
    )
    generate.add_argument("--trust-remote-code", action="store_true", help="run the repo's code")
    dtype_argument(generate)
    generate.set_defaults(handler=_generate)

    zoo = sub.add_parser(
        "zoo", help="real model shapes (Llama-3.2-1B, Gemma-3-1B, …) with random bf16 weights"
    )
    zoo.add_argument("--build", nargs="+", metavar="NAME", help="build these into cache/models/zoo")
    zoo.add_argument("--device", default="cpu", help="where to draw the weights (cpu, cuda)")
    zoo.add_argument("--json", action="store_true", help="print the list as JSON")
    zoo.set_defaults(handler=_zoo)
