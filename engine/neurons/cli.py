"""`python -m engine neuron show|overlap|sets`: one neuron from every view; set overlaps."""

from __future__ import annotations

import argparse

from engine.console import print_json
from engine.neurons.sets import DEFAULT_TOP

_SETS_HELP = (
    "set specs: ica:C[@TEMPLATES], pruning[:N][@RUN], updates[:N][@RUN], adapter[:N]@NAME, "
    "list:L.I,L.I or list:FILE, or 'all' (every set known for this model; the default)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    neuron = subparsers.add_parser("neuron")
    commands = neuron.add_subparsers(dest="neuron_command", metavar="COMMAND")
    commands.required = True

    show = commands.add_parser("show", help="one neuron's passport: what every view says of it")
    show.add_argument("--model", required=True, help="model source: demo, demo-toxic, a folder")
    show.add_argument("--layer", type=int, required=True)
    show.add_argument("--neuron", type=int, required=True)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)

    overlap = commands.add_parser("overlap", help="pairwise overlaps of neuron sets, with p-values")
    overlap.add_argument("--model", required=True)
    overlap.add_argument("--sets", nargs="+", default=["all"], metavar="SPEC", help=_SETS_HELP)
    overlap.add_argument(
        "--top",
        type=int,
        default=DEFAULT_TOP,
        help="N for pruning / updates / adapter sets without one",
    )
    overlap.add_argument("--layers", action="store_true", help="print each pair's layers too")
    overlap.add_argument("--json", action="store_true")
    overlap.set_defaults(handler=_overlap)

    listing = commands.add_parser("sets", help="the neuron sets known for a model")
    listing.add_argument("--model", required=True)
    listing.add_argument("--top", type=int, default=DEFAULT_TOP)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_sets)


def _show(args: argparse.Namespace) -> int:
    from engine.neurons.passport import passport

    p = passport(args.model, args.layer, args.neuron)
    if args.json:
        print_json(p.as_dict())
        return 0
    print(
        f"Neuron {p.name} of {args.model} ({p.space.family}, {p.space.num_layers} layers × "
        f"{p.space.widths[args.layer]} neurons)"
    )
    for line in p.findings():
        print(f"  · {line}")
    sections = [
        ("ICA components", p.ica.head(5)),
        ("Pruning scores", p.attribution),
        ("Weight updates", p.updates),
        ("Adapters", p.adapters),
        ("Top-activating snippets", p.snippets),
    ]
    for title, table in sections:
        if not table.empty:
            print(f"\n{title}:\n{table.to_string(index=False, max_colwidth=48)}")
    if p.missing:
        print("\nNot computed yet:")
        for m in p.missing:
            print(f"  · {m.what}\n    {m.command}")
    return 0


def _resolve(args: argparse.Namespace):
    from engine.errors import SubnetScopeError
    from engine.neurons.sets import resolve_sets
    from engine.neurons.space import space_of

    if args.top < 1:
        raise SubnetScopeError("--top must be at least 1")
    space = space_of(args.model)
    return space, resolve_sets(getattr(args, "sets", ["all"]), space, args.top)


def _sets(args: argparse.Namespace) -> int:

    _, sets = _resolve(args)
    rows = [
        {
            "spec": s.spec,
            "area": s.area,
            "label": s.label,
            "size": len(s),
            "model": s.model,
            "from": s.note,
        }
        for s in sets
    ]
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{r['spec']:<32} {r['size']:>6}  {r['label']} ({r['model']})")
    return 0


def _overlap(args: argparse.Namespace) -> int:
    from engine.errors import SubnetScopeError
    from engine.neurons.overlap import overlap_table, overlaps

    space, sets = _resolve(args)
    if len(sets) < 2:
        raise SubnetScopeError(f"an overlap needs two sets or more; got {len(sets)}")
    pairs = overlaps(sets, space.widths)
    table = overlap_table(pairs)
    if args.json:
        records = table.to_dict(orient="records")
        if args.layers:
            for record, pair in zip(records, pairs, strict=True):
                record["layers"] = pair.layers.to_dict(orient="records")
        out = {
            "model": args.model,
            "sets": [
                {"spec": s.spec, "label": s.label, "size": len(s), "model": s.model} for s in sets
            ],
            "pairs": records,
        }
        print_json(out)
        return 0
    order = table["p_layered"].argsort(kind="stable").tolist()
    print(table.iloc[order].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    if args.layers:
        for i in order:
            print(f"\n{pairs[i].a} × {pairs[i].b}:\n{pairs[i].layers.to_string(index=False)}")
    return 0
