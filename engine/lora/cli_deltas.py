"""`python -m engine lora deltas`: delta activations of adapters, their distances and a 2-D map."""

from __future__ import annotations

import argparse

from engine.console import print_json
from engine.lora.cli_blend import ADAPTERS_HELP


def _deltas(args: argparse.Namespace) -> int:
    from engine.lora.adapters import load_adapter_set, module_shapes
    from engine.lora.catalog import resolve_adapters
    from engine.lora.deltas import delta_activations, delta_distances, delta_map
    from engine.lora.probes import probe_texts
    from engine.models import load_model

    probe_texts(args.probes)  # a bad probe name fails before the model loads
    loaded = load_model(args.base, dtype=args.dtype)
    paths, names = resolve_adapters(args.adapters)
    adapters = load_adapter_set(
        paths, names, architecture=loaded.architecture, shapes=module_shapes(loaded.model)
    )
    table = delta_activations(
        loaded,
        adapters,
        args.probes,
        cache=not args.no_cache,
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    points = delta_map(table)
    distances = delta_distances(table)
    if args.json:
        print_json(
            {
                "base": args.base,
                **table.to_json(),
                "map": points.to_dict(orient="records"),
                "explained": points.attrs["explained"],
                "distances": distances.to_dict(orient="records"),
                "deltas": {n: v.tolist() for n, v in zip(table.names, table.vectors, strict=True)},
            }
        )
        return 0
    width = max(len(n) for n in points["name"])
    print(
        f"delta activations of {len(table.names)} adapter(s) on {args.base}, probes {table.probes}"
    )
    if table.truncated:
        cut = table.max_length
        print(
            f"warning: {table.truncated} probe text(s) are longer than {cut} tokens and were "
            f"cut: their last token is token {cut}"
        )
    explained = ", ".join(f"{e:.0%}" for e in points.attrs["explained"])
    print(f"\n{'name':<{width}}  {'‖Δ‖':>10}  {'x':>10}  {'y':>10}   (PCA explains {explained})")
    for row in points.itertuples():
        print(f"{row.name:<{width}}  {row.norm:>10.4g}  {row.x:>10.4g}  {row.y:>10.4g}")
    if len(distances):
        print(f"\n{'a':<{width}}  {'b':<{width}}  {'distance':>10}  {'cosine':>8}")
        for row in distances.itertuples():
            print(f"{row.a:<{width}}  {row.b:<{width}}  {row.distance:>10.4g}  {row.cosine:>8.3f}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from engine.lora.probes import PROBE_SETS
    from engine.models.cli import dtype_argument

    deltas = commands.add_parser(
        "deltas",
        help="delta activations: how far each adapter moves the last-token state (seed 004)",
    )
    deltas.add_argument("--base", required=True, help="'demo', a model folder or a hub id")
    deltas.add_argument("--adapters", nargs="+", required=True, help=ADAPTERS_HELP)
    deltas.add_argument(
        "--probes",
        default="generic",
        help=f"a probe set ({', '.join(PROBE_SETS)}) or a .txt / .jsonl file (default: generic, "
        "the Delta Activations paper's five templates)",
    )
    deltas.add_argument(
        "--max-length", type=int, default=256, help="tokens per probe text (LLGBM: 256)"
    )
    deltas.add_argument("--batch-size", type=int, default=8, help="probe texts per forward pass")
    deltas.add_argument("--no-cache", action="store_true", help="recompute; skip the disk cache")
    deltas.add_argument("--json", action="store_true", help="print everything as JSON")
    dtype_argument(deltas)
    deltas.set_defaults(handler=_deltas)
