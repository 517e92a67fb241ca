"""`python -m engine sparsity ...`: diff, series, compare and shells from the shell (seed 000)."""

from __future__ import annotations

import argparse
import math

from engine.atomic import write_parquet_atomic
from engine.console import print_json
from engine.sparsity.config import DEFAULT_TOLERANCES, REFERENCE_DTYPES, DiffConfig


def _config(args: argparse.Namespace) -> DiffConfig:
    return DiffConfig(
        tolerances=tuple(args.tolerances),
        mask_criterion=args.mask_criterion,
        ranks=getattr(args, "ranks", False),
        rank_memory_mb=getattr(args, "rank_memory_mb", DiffConfig.rank_memory_mb),
        intersection=args.intersection,
        reference=getattr(args, "reference", False),
        reference_dtype=getattr(args, "reference_dtype", DiffConfig.reference_dtype),
    )


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.4g}%"


def _diff(args: argparse.Namespace) -> int:
    from engine.sparsity import diff
    from engine.sparsity.localization import BASES, BLOCK_CHANGED, TENSOR_FRO
    from engine.sparsity.reference import script_report

    result = diff(args.base, args.tuned, _config(args), cache=not args.no_cache)
    if args.out:
        write_parquet_atomic(args.out, result.tensors)
    s = result.summary
    if args.json:
        print_json(s | {"out": args.out, "result_dir": result.path})
        return 0
    print(
        f"{s['tuned']}  vs  {s['base']}   ({s['layout']['family']}, {s['tensors']} tensors, "
        f"{s['numel']:,} weights, {s['seconds']} s)"
    )
    for criterion, total in s["changed"].items():
        name = f"|Δ| > {criterion}" if criterion[0].isdigit() else criterion
        print(f"  {name:<14} {total['changed']:>14,} changed  {_pct(total['fraction'])}")
    print(
        f"  changes a bf16 copy would not show: {_pct(s['bf16_invisible_share'])}"
        f"   relative update norm {s['rel_norm']:.3g}"
    )
    loc, seed = s["localization"], s["localization_seed"]
    print(
        f"  localization, {BASES[BLOCK_CHANGED]} ({s['mask_criterion']}): gini {loc['gini']:.3f}  "
        f"entropy {loc['entropy']:.3f}  top-{loc['k']} {loc['top_k']:.3f}"
    )
    print(
        f"  localization, {BASES[TENSOR_FRO]} ({seed['n']} tensors): gini {seed['gini']:.3f} "
        f"(seed's code, no n/(n−1): {seed['gini_unscaled']:.3f})  "
        f"entropy {seed['entropy']:.3f}  top-{seed['k']} {seed['top_k']:.3f}"
    )
    fractions = s["layers"]["fraction"][s["mask_criterion"]]
    print("  per layer: " + "  ".join(f"{i}:{_pct(f)}" for i, f in enumerate(fractions)))
    if "ranks" in s:
        r = s["ranks"]
        print(
            f"  ranks: {r['computed']} of {r['matrices']} updates decomposed "
            f"({r['skipped']} skipped); median rank / full rank {r['median_rank_ratio']}"
        )
    if s["mismatch"]["only_base"] or s["mismatch"]["only_tuned"] or s["mismatch"]["shapes"]:
        m = s["mismatch"]
        print(
            f"  compared the intersection: left out {len(m['only_base'])} base-only, "
            f"{len(m['only_tuned'])} tuned-only, {len(m['shapes'])} reshaped tensors"
        )
    if "reference" in s:
        ref = s["reference"]
        print(
            f"\nthe seed's reference computation ({ref['script']}: both loaded as "
            f"{ref['dtype']}, |Δ| ≤ τ by torch.isclose, layers as unweighted means):"
        )
        print(script_report(ref))
        if ref["note"]:
            print(f"  ({ref['note']})")
    if args.out:
        print(f"  table: {args.out}")
    return 0


def _series(args: argparse.Namespace) -> int:
    from engine.sparsity import series

    result = series(args.base, args.run_dir, _config(args), cache=not args.no_cache)
    if args.out:
        write_parquet_atomic(args.out, result.steps)
    if args.json:
        print_json(result.summary())
        return 0
    print(f"{'step':>8}  {'changed':>12}  {'fraction':>10}  {'coverage':>9}  {'jaccard prev':>12}")
    for row in result.steps.itertuples():
        print(
            f"{row.step:>8}  {row.changed:>12,}  {_pct(row.fraction):>10}  "
            f"{_pct(row.coverage):>9}  {_pct(row.jaccard_prev):>12}"
        )
    if len(result.seed):
        print(
            "\nthe seed's coverage (analyze_sparse_subnetwork.py: 2-D attn/mlp/lm_head weights, "
            "|ΔW| > τ in float32):"
        )
        print(f"{'step':>8}  {'tau':>7}  {'density':>10}  {'coverage':>9}")
        for row in result.seed.itertuples():
            print(
                f"{row.step:>8}  {row.tau:>7.0e}  {_pct(row.fraction):>10}  {_pct(row.coverage):>9}"
            )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from engine.sparsity.compare import compare_runs
    from engine.sparsity.localization import BASES, BLOCK_CHANGED, TENSOR_FRO

    result = compare_runs(
        args.runs, _config(args), criterion=args.criterion, basis=args.basis, k=args.top_k
    )
    if args.out:
        write_parquet_atomic(args.out, result.layers)
    if args.json:
        print_json(result.summary())
        return 0
    print(result.metrics.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    blocks = BASES[BLOCK_CHANGED] if args.basis == "count" else "changed share per block"
    print(
        f"(gini / entropy / top_k: {blocks}; seed_*: {BASES[TENSOR_FRO]} over seed_tensors "
        "tracked tensors, seed_gini_unscaled as the seed's code logs it, without n/(n−1))"
    )
    wide = result.profiles.pivot(index="depth", columns="run", values="share")
    print("\nshare of updates by normalized depth (layer / (L−1)):")
    print(wide.to_string(float_format=lambda x: f"{x:.3f}"))
    if len(result.overlap):
        print("\noverlap of the update masks:")
        print(result.overlap.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0


def _shells(args: argparse.Namespace) -> int:
    from engine.sparsity import boundaries_from_config, diff, shell_summary, shell_table

    result = diff(args.base, args.tuned, _config(args), cache=not args.no_cache)
    bounds = args.boundaries or boundaries_from_config(args.from_config or args.base)
    table = shell_table(result, bounds, args.criterion)
    summary = shell_summary(table)
    if args.out:
        write_parquet_atomic(args.out, table)
    if args.json:
        print_json({"boundaries": bounds, "shells": summary.to_dict(orient="records")})
        return 0
    print(f"shell boundaries {bounds}")
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0


def _common(p: argparse.ArgumentParser, *, ranks: bool = False) -> None:
    help_ = DiffConfig.help
    p.add_argument(
        "--tolerances",
        nargs="+",
        type=float,
        default=list(DEFAULT_TOLERANCES),
        metavar="TAU",
        help=help_("tolerances"),
    )
    p.add_argument("--mask-criterion", default="auto", help=help_("mask_criterion"))
    p.add_argument("--intersection", action="store_true", help=help_("intersection"))
    p.add_argument("--no-cache", action="store_true", help="recompute, do not use the cache")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    if ranks:
        p.add_argument("--ranks", action="store_true", help=help_("ranks"))
        p.add_argument(
            "--rank-memory-mb",
            type=int,
            default=DiffConfig.rank_memory_mb,
            help=help_("rank_memory_mb"),
        )
        p.add_argument("--reference", action="store_true", help=help_("reference"))
        p.add_argument(
            "--reference-dtype",
            choices=list(REFERENCE_DTYPES),
            default=DiffConfig.reference_dtype,
            help=help_("reference_dtype"),
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    area = subparsers.add_parser("sparsity")
    sub = area.add_subparsers(dest="command", metavar="COMMAND", required=True)
    model_help = (
        "'demo', a model folder, a .safetensors file, a PEFT adapter folder (merged onto "
        "--base) or a hub id (online)"
    )

    p = sub.add_parser("diff", help="tuned against base: changed weights per tensor and block")
    p.add_argument("--base", required=True, help=model_help)
    p.add_argument("--tuned", required=True, help=model_help)
    p.add_argument("--out", help="write the long per-tensor table to this .parquet file")
    _common(p, ranks=True)
    p.set_defaults(handler=_diff)

    p = sub.add_parser("series", help="every checkpoint-<step>/ of a run: fraction and coverage")
    p.add_argument("--base", required=True, help=model_help)
    p.add_argument("--run-dir", required=True, help="a folder of checkpoint-<step>/ folders")
    p.add_argument("--out", help="write the per-step table to this .parquet file")
    _common(p)
    p.set_defaults(handler=_series)

    p = sub.add_parser("compare", help="localization across models on normalized depth")
    p.add_argument(
        "--runs",
        nargs="+",
        required=True,
        metavar="RUN",
        help="[LABEL=]BASE:TUNED, or a .parquet saved by `sparsity diff --out`",
    )
    p.add_argument("--criterion", help="'exact', 'bf16' or a tolerance (default: the mask's)")
    p.add_argument(
        "--basis",
        choices=("count", "fraction"),
        default="count",
        help="the per-block distribution: changed weights per block (default) or per-block "
        "fractions; the seed_* columns are always seed 000's basis, per-tensor ‖ΔW‖_F",
    )
    p.add_argument("--top-k", type=int, default=3, help="k of the top-k concentration")
    p.add_argument("--out", help="write the per-layer table of every run to this .parquet file")
    _common(p)
    p.set_defaults(handler=_compare)

    p = sub.add_parser("shells", help="MatFormer shells: update fractions in nested FFN slices")
    p.add_argument("--base", required=True, help=model_help)
    p.add_argument("--tuned", required=True, help=model_help)
    p.add_argument(
        "--boundaries",
        nargs="+",
        type=int,
        metavar="B",
        help="nested FFN widths or boundaries, e.g. 2048 4096 8192",
    )
    p.add_argument("--from-config", help="take the widths from this config.json (default: base's)")
    p.add_argument("--criterion", help="'exact', 'bf16' or a tolerance (default: the mask's)")
    p.add_argument("--out", help="write the per-layer shell table to this .parquet file")
    _common(p)
    p.set_defaults(handler=_shells)
