"""`python -m engine ica build-templates|show`: seed 001's template builder from the shell."""

from __future__ import annotations

import argparse

from engine.console import print_json, progress_printer


def _build(args: argparse.Namespace) -> int:
    from engine.ica.build import build_templates
    from engine.ica.config import BuildConfig

    config = BuildConfig(
        model=args.model,
        datasets=tuple(args.datasets),
        samples_per_ds=args.samples_per_ds,
        components=args.components,
        percentile=args.percentile,
        threshold=args.threshold,
        layers=args.layers,
        max_length=args.max_length,
        pca=args.pca,
        seed=args.seed,
        memory_budget_gb=args.memory_budget_gb,
        standardize=args.standardize,
        space=args.space,
    )
    from engine.errors import SubnetScopeError
    from engine.models import load_model

    if not args.out.endswith(".json"):  # before the model loads
        raise SubnetScopeError(f"the templates file must end in .json, not '{args.out}'")
    loaded = load_model(config.model, dtype=args.dtype)
    templates = build_templates(
        config, args.out, progress=progress_printer(args.quiet), loaded=loaded
    )
    _print_summary(templates)
    return 0


def _print_summary(templates) -> None:
    from engine.ica.build import key_neuron_share
    from engine.ica.explore import late_layer_share
    from engine.ica.templates import SPACE_LABELS
    from engine.models.layers import format_layers

    meta = templates.metadata
    print(f"templates: {templates.path}")
    print(f"space: {templates.space} ({SPACE_LABELS[templates.space]})")
    if meta.get("source_format"):
        print(
            f"a {meta['source_format']} file ({meta.get('name') or 'unnamed'}): layers "
            f"{format_layers(templates.layers)}, hidden size {meta.get('hidden_size')}"
        )
    if "model" in meta:
        pca = meta.get("pca_dims")
        kept = meta.get("explained_variance")
        print(
            f"model {meta.get('model_name', meta.get('model'))} ({meta.get('family')}), layers "
            f"{format_layers(templates.layers)}, {meta.get('tokens')} tokens from "
            f"{', '.join(meta.get('datasets', []))}"
        )
        print(
            f"{len(templates.component_ids)} components, {meta.get('threshold')} "
            f"{meta.get('percentile') if meta.get('threshold') == 'percentile' else '|z|>1.96'}; "
            + (f"PCA to {pca} dims ({100 * kept:.1f}% of variance)" if pca else "no PCA")
        )
        share = key_neuron_share(templates)
        if share == share:  # not NaN
            print(f"key in at least one component: {100 * share:.1f}% of the covered channels")
        late = late_layer_share(templates)
        if late == late and len(templates.layers) > 3:
            print(f"last 3 layers hold {100 * late:.1f}% of a component's key channels (mean)")
        for note in meta.get("notes", []):
            print(f"note: {note}")
    print(f"{'component':>9}  {'neurons':>7}  layers (key neurons)")
    for c in templates.component_ids:
        layers = templates.components[c]
        top = sorted(layers.items(), key=lambda kv: -len(kv[1]))[:6]
        where = ", ".join(f"{layer}:{len(ns)}" for layer, ns in top)
        print(f"{c:>9}  {templates.size(c):>7}  {where}{' …' if len(layers) > 6 else ''}")


def _show(args: argparse.Namespace) -> int:
    from engine.ica.templates import load_templates

    templates = load_templates(args.file, space=args.space)
    if args.model:
        from engine.models import load_model

        loaded = load_model(args.model, dtype=args.dtype)
        templates.validate(loaded.architecture, loaded.display_name)
    if args.json:
        print_json(
            {
                "path": str(templates.path),
                "space": templates.space,
                "metadata": templates.metadata,
                "components": {
                    str(c): {
                        "neurons": templates.size(c),
                        "layers": {
                            str(layer): len(ns) for layer, ns in templates.components[c].items()
                        },
                    }
                    for c in templates.component_ids
                },
            }
        )
        return 0
    _print_summary(templates)
    if args.model:
        print(f"valid for {args.model}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.ica.config import BuildConfig
    from engine.ica.templates import SPACES
    from engine.models.cli import dtype_argument

    ica = subparsers.add_parser("ica")
    sub = ica.add_subparsers(dest="ica_command", required=True)
    build = sub.add_parser("build-templates", help="capture, PCA + FastICA, key-neuron templates")
    build.add_argument("model", help=BuildConfig.__dataclass_fields__["model"].metadata["help"])
    build.add_argument("datasets", nargs="+", metavar="DATA", help="text sources")
    defaults = BuildConfig()
    build.add_argument("--components", type=int, default=defaults.components)
    build.add_argument("--percentile", type=float, default=defaults.percentile)
    build.add_argument("--threshold", choices=("percentile", "zscore"), default="percentile")
    build.add_argument("--samples-per-ds", type=int, default=defaults.samples_per_ds)
    build.add_argument("--layers", default="all", help="'all', '0-5', '0,2,4'")
    build.add_argument("--max-length", type=int, default=defaults.max_length)
    build.add_argument("--pca", default="auto", help="'auto', a number, or 0 for none")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=defaults.standardize,
        help="z-score every feature before ICA, as seed 001's reference does (default on)",
    )
    build.add_argument(
        "--space",
        choices=SPACES,
        default=defaults.space,
        help="mlp_neurons: down projection input (intermediate neurons); mlp_out: its output "
        "(hidden-size channels, seed 001's reference)",
    )
    build.add_argument("--memory-budget-gb", type=float, default=defaults.memory_budget_gb)
    build.add_argument("--out", required=True, help="the templates file to write (.json)")
    build.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    dtype_argument(build)
    build.set_defaults(handler=_build)
    show = sub.add_parser("show", help="summarize a templates file (and check it fits a model)")
    show.add_argument("file", help="templates .json (or a job's result folder)")
    show.add_argument("--model", help="check the templates against this model")
    show.add_argument("--space", choices=SPACES, help="fail unless the file is in this space")
    show.add_argument("--json", action="store_true")
    dtype_argument(show)
    show.set_defaults(handler=_show)
