"""`python -m engine lora blend|inspect`: blend PEFT adapters into a PEFT folder, show geometry."""

from __future__ import annotations

import argparse
import sys

from engine.console import print_json

ADAPTERS_HELP = "PEFT adapter folders, listed adapters' names, or 'demo' (the demo's three)"


def _load_set(adapters: list[str], base: str | None):
    from engine.lora.adapters import base_shapes, load_adapter_set
    from engine.lora.catalog import resolve_adapters

    paths, names = resolve_adapters(adapters)
    if base is None:
        adapter_set = load_adapter_set(paths, names)
    else:
        architecture, shapes = base_shapes(base)
        adapter_set = load_adapter_set(paths, names, architecture=architecture, shapes=shapes)
    for warning in adapter_set.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return adapter_set


def _blend(args: argparse.Namespace) -> int:
    from engine.errors import SubnetScopeError
    from engine.lora.blend import BlendSpec, blend, save_blend

    adapters = _load_set(args.adapters, args.base)
    n = len(adapters.adapters)
    weights = tuple(args.weights) if args.weights else tuple(1.0 / n for _ in range(n))
    if len(weights) != n:
        raise SubnetScopeError(f"Got {len(weights)} weights for {n} adapters; give one each.")
    spec = BlendSpec(
        weights=weights,
        method=args.method,
        rank=args.rank,
        density=args.density,
        majority_sign_method=args.majority_sign,
        engine=args.engine,
    )
    result = blend(adapters, spec)
    out = save_blend(result, adapters, args.out)
    worst = max(result.errors, key=result.errors.get)
    if args.json:
        print_json(
            {
                "out": str(out),
                "adapters": list(adapters.names),
                "weights": list(spec.weights),
                "method": spec.method,
                "engine": result.engine,
                "rank": result.rank,
                "error": result.error,
                "truncation": result.truncation_total,
                "seconds": result.seconds,
                "errors": result.errors,
                "truncations": result.truncation,
                "notes": list(result.notes),
            }
        )
        return 0
    mix = ", ".join(f"{w:g}·{name}" for name, w in zip(adapters.names, spec.weights, strict=True))
    print(f"blend: {spec.method} ({result.engine}) of {mix}, rank {result.rank}")
    print(f"modules: {len(adapters.modules)}, {result.seconds:.3f} s")
    print(f"error against the exact weighted sum: {result.error:.3e} (relative Frobenius)")
    print(f"truncation (best rank-{result.rank} error): {result.truncation_total:.3e}")
    print(f"worst module: {worst} ({result.errors[worst]:.3e})")
    for note in result.notes:
        print(f"note: {note}")
    print(f"saved: {out}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from engine.lora.geometry import inspect_adapters

    adapters = _load_set(args.adapters, args.base)
    report = inspect_adapters(adapters)
    if args.json:
        print_json(report)
        return 0
    for a in report["adapters"]:
        print(
            f"{a['name']}: rank {a['rank']}, alpha {a['alpha']:g}"
            f"{' (rslora)' if a['use_rslora'] else ''}, scaling {a['scaling']:.4g}, "
            f"{a['modules']} modules, ‖ΔW‖ {a['norm']:.4g}, "
            f"effective rank {a['mean_effective_rank']:.2f}, stable rank "
            f"{a['mean_stable_rank']:.2f} (means over modules)"
        )
    names = report["cosine_overall"]["names"]
    if len(names) > 1:
        width = max(len(n) for n in names)
        print("\ncosine over all modules:")
        print(" " * width + "  " + "  ".join(f"{n[:8]:>8}" for n in names))
        for name, row in zip(names, report["cosine_overall"]["matrix"], strict=True):
            cells = "  ".join("     nan" if v is None else f"{v:8.3f}" for v in row)
            print(f"{name:<{width}}  {cells}")
    print("\nper module (‖ΔW‖_F, effective rank):")
    for module in report["modules"]:
        rows = [g for g in report["geometry"] if g["module"] == module]
        cells = ", ".join(f"{g['adapter']} {g['norm']:.3g}/{g['effective_rank']:.2f}" for g in rows)
        print(f"  {module}: {cells}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from engine.lora.methods import METHODS

    blend = commands.add_parser(
        "blend", help="blend PEFT LoRA adapters into one PEFT folder and print the blend error"
    )
    blend.add_argument(
        "--base", help="base model (folder, hub id or 'demo') to check the adapters against"
    )
    blend.add_argument("--adapters", nargs="+", required=True, help=ADAPTERS_HELP)
    blend.add_argument(
        "--weights", nargs="+", type=float, help="one weight per adapter (default: equal, sum 1)"
    )
    blend.add_argument("--method", choices=METHODS, default="svd", help="PEFT combination type")
    blend.add_argument("--rank", type=int, help="svd types: the blend's rank (default: max r)")
    blend.add_argument(
        "--density", type=float, help="ties, dare_*, magnitude_prune*: fraction of values kept"
    )
    blend.add_argument(
        "--majority-sign",
        choices=("total", "frequency"),
        default="total",
        help="ties types: how the majority sign is chosen",
    )
    blend.add_argument(
        "--engine",
        choices=("auto", "peft"),
        default="auto",
        help="auto: exact low-rank svd/cat, PEFT for the rest; peft: PEFT for all",
    )
    blend.add_argument("--out", required=True, help="folder to write the PEFT adapter into")
    blend.add_argument("--json", action="store_true", help="print JSON")
    blend.set_defaults(handler=_blend)

    inspect = commands.add_parser(
        "inspect", help="geometry of adapters: norms, ranks, cosines per module and overall"
    )
    inspect.add_argument("adapters", nargs="+", help=ADAPTERS_HELP)
    inspect.add_argument("--base", help="base model to check the adapters against")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(handler=_inspect)
