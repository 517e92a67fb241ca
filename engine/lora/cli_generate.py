"""`python -m engine lora generate|generators`: adapters from prompts with a trained generator.

Training, the ablation and a fresh evaluation are job kinds (`jobs submit lora.generator_train`,
`lora.generator_ablation`, `lora.generator_eval`; the teachers: `train.lora_teachers`).
"""

from __future__ import annotations

import argparse

from engine.console import print_json


def _generate(args: argparse.Namespace) -> int:
    from engine.lora.generator.generate import (
        generate_adapter,
        open_generator,
        read_prompts,
        save_generated,
    )
    from engine.lora.lowrank import frobenius

    prompts = read_prompts(args.prompts)  # a bad file fails before anything loads
    run = open_generator(args.generator)
    loaded = None
    if run.meta["encoder"] == "base":
        from engine.models import load_model

        loaded = load_model(run.model, dtype=args.dtype)
    adapter = generate_adapter(run, prompts, loaded)
    out = save_generated(adapter, args.out)
    norm = sum(frobenius(f) ** 2 for f in adapter.factors.values()) ** 0.5
    summary = {
        "out": str(out),
        "prompts": len(prompts),
        "modules": len(adapter.factors),
        "rank": int(run.meta["rank"]),
        "model": run.model,
        "generator": str(run.folder),
        "encoder": run.meta["encoder"],
        "update_norm": norm,
    }
    if args.json:
        print_json(summary)
        return 0
    print(
        f"generated a rank-{summary['rank']} adapter for {run.model} on {len(adapter.factors)} "
        f"modules from {len(prompts)} prompts (‖ΔW‖_F {norm:.4g})\nsaved to {out}"
    )
    return 0


def _generators(args: argparse.Namespace) -> int:
    import json

    from engine.lora.generator.catalog import list_generators

    rows = []
    for result in list_generators():
        meta = json.loads((result.path / "generator" / "meta.json").read_text())
        rows.append(
            {
                "job": result.view.id,
                "demo": result.is_demo,
                "model": meta["model"],
                "loss": meta["loss"],
                "arch": meta["arch"],
                "encoder": meta["encoder"],
                "held_out": meta["held_out"],
                "folder": str(result.path / "generator"),
            }
        )
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no trained generator: `python -m engine demo build` trains the demo's")
    for r in rows:
        demo = " (demo)" if r["demo"] else ""
        held = ",".join(r["held_out"])
        print(f"{r['job']}{demo}: {r['loss']} {r['arch']} · {r['encoder']} · held out {held}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from engine.models.cli import dtype_argument

    generate = commands.add_parser(
        "generate", help="an adapter from prompts with a trained generator (seed 004, DnD/LLGBM)"
    )
    generate.add_argument(
        "--generator",
        required=True,
        help="a lora.generator_train job id, its result folder, or 'demo'",
    )
    generate.add_argument(
        "--prompts",
        required=True,
        help="a .txt (one prompt per line), .json list or .jsonl of prompt/instruction/text",
    )
    generate.add_argument("--out", required=True, help="the new PEFT folder (must not exist)")
    dtype_argument(generate)
    generate.add_argument("--json", action="store_true", help="print the summary as JSON")
    generate.set_defaults(handler=_generate)

    generators = commands.add_parser("generators", help="trained LoRA generators")
    generators.add_argument("--json", action="store_true")
    generators.set_defaults(handler=_generators)
