"""`python -m engine attention stats|compare|sweep|context|layout`: attention heads from the shell.

`stats`, `compare` and `layout` run here; `sweep` and `context` submit their job kinds (as `train`
does; `--wait` follows the job) or, with `--here`, run in this process."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from engine.attention.config import (
    CONTEXT_KIND,
    STAT_LABELS,
    STATS,
    SWEEP_KIND,
    ContextConfig,
    StatsConfig,
    SweepConfig,
)
from engine.console import print_json, progress_printer


def _g4(x: float) -> str:
    return f"{x:.4g}"


def _config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of a config dataclass, with its default and help text."""
    from engine.models.cli import dtype_argument

    for f in dataclasses.fields(cls):
        if f.name == "dtype":
            dtype_argument(parser)
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        if isinstance(f.default, tuple):
            parser.add_argument(
                flag, type=int, nargs="+", default=list(f.default), metavar="N", help=help_
            )
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=help_)


def _config(cls: type, args: argparse.Namespace):
    return cls.from_params({f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _texts(config: StatsConfig) -> list[str]:
    from engine.data import load_texts

    return load_texts(config.text, limit=config.texts)


def _stats_json(stats) -> dict[str, Any]:
    return {
        "window": stats.window,
        "texts": stats.texts,
        "tokens": stats.tokens,
        "largest_block_bytes": stats.largest_block_bytes,
        "heads": stats.frame.to_dict(orient="records"),
    }


def _by_layer(frame) -> str:
    table = frame.groupby(["layer", "kind"], as_index=False)[list(STATS)].mean()
    return table.to_string(index=False, float_format=_g4)


def _stats(args: argparse.Namespace) -> int:
    from engine.attention.capture import head_stats
    from engine.models import load_model

    config = _config(StatsConfig, args)
    loaded = load_model(config.model, dtype=config.dtype)
    report = progress_printer(args.quiet or args.json)
    stats = head_stats(
        loaded,
        _texts(config),
        window=config.window,
        max_tokens=config.max_tokens,
        on_text=lambda i, n: report(i / n, f"text {i}/{n}"),
    )
    if args.json:
        print_json({"model": config.model, **_stats_json(stats)})
        return 0
    print(
        f"{config.model}: {stats.texts} texts, {stats.tokens} tokens, w = {stats.window}; "
        "means over heads (each head: over query positions 1..T-1)"
    )
    print("  " + "; ".join(f"{k}: {v}" for k, v in STAT_LABELS.items()))
    print(_by_layer(stats.frame) if not args.heads else stats.frame.to_string(index=False))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from engine.attention.compare import (
        change_by_kind,
        choice_of,
        compare_heads,
        reference_stats,
        tuned_stats,
    )
    from engine.models import load_model

    config = _config(StatsConfig, args)
    base = load_model(config.model, dtype=config.dtype)
    choice = choice_of(args.tuned)
    texts = _texts(config)
    kwargs = {"window": config.window, "max_tokens": config.max_tokens}
    report = progress_printer(args.quiet or args.json)
    report(0.0, f"base: {choice.base or config.model}")
    base_stats = reference_stats(base, choice, texts, **kwargs)
    report(0.5, f"tuned: {choice.label}")
    tuned = tuned_stats(base, choice, texts, **kwargs)
    frame = compare_heads(base_stats, tuned, args.stat)
    kinds = change_by_kind(frame, args.stat)
    top = frame.sort_values("rank").head(args.top)
    if args.json:
        print_json(
            {
                "model": config.model,
                "tuned": str(choice.path),
                "tuned_kind": choice.kind,
                "compared_with": str(choice.base or config.model),
                "stat": args.stat,
                "window": base_stats.window,
                "texts": base_stats.texts,
                "tokens": base_stats.tokens,
                "heads": frame.to_dict(orient="records"),
                "by_kind": kinds.to_dict(orient="records"),
            }
        )
        return 0
    cols = ["rank", "layer", "head", "kind", f"{args.stat}_base", f"{args.stat}_tuned"]
    against = f"its run's saved base ({choice.base})" if choice.base else config.model
    print(f"{choice.label} vs {against}: the {len(top)} heads whose {args.stat} moved most")
    print(top[[*cols, f"{args.stat}_delta"]].to_string(index=False, float_format=_g4))
    print(
        f"\nby layer kind (Δ = tuned − base; in_top: of the {int(kinds['top'].iloc[0])} most "
        "changed heads)"
    )
    print(kinds.drop(columns="top").to_string(index=False, float_format=_g4))
    return 0


def _layout(args: argparse.Namespace) -> int:
    from engine.attention.layout import layout_table
    from engine.models.loading import source_config

    table = layout_table(source_config(args.model))
    if args.json:
        print_json(table.to_dict(orient="records"))
        return 0
    local = int((table["kind"] == "local").sum())
    print(f"{args.model}: {len(table)} layers, {local} local, {len(table) - local} global")
    print(table.to_string(index=False))
    return 0


def _follow(args: argparse.Namespace, kind: str, params: dict[str, Any]) -> int:
    from engine.jobs.cli import follow_job

    return follow_job(args, kind, params)


def _sweep(args: argparse.Namespace) -> int:
    config = _config(SweepConfig, args)
    if not args.here:
        return _follow(args, SWEEP_KIND, config.to_params())
    from engine.attention.sweep import run_sweep

    result = run_sweep(config, progress=progress_printer(args.quiet or args.json))
    if args.json:
        print_json({**result.summary(), "rows": result.frame.to_dict(orient="records")})
        return 0
    b = result.baseline
    print(
        f"{config.model}: baseline NLL {b['nll']:.4f} (perplexity {b['perplexity']:.3f}) over "
        f"{b['texts']} × {b['max_tokens']} tokens; rank 1 = cheapest to make local"
    )
    print(result.frame.sort_values(["window", "rank"]).to_string(index=False, float_format=_g4))
    print(result.summary()["message"])
    return 0


def _context(args: argparse.Namespace) -> int:
    config = _config(ContextConfig, args)
    if not args.here:
        return _follow(args, CONTEXT_KIND, config.to_params())
    from engine.attention.context import run_context

    result = run_context(config, progress=progress_printer(args.quiet or args.json))
    if args.json:
        print_json(
            {
                **result.summary(),
                "timing": result.timing.to_dict(orient="records"),
                "heads": result.frame.to_dict(orient="records"),
            }
        )
        return 0
    means = result.frame.groupby(["length", "kind"], as_index=False)[list(STATS)].mean()
    table = means.merge(result.timing[["length", "seconds"]], on="length")
    print(f"{config.model}: means over heads at each length (w = {config.window})")
    print(table.to_string(index=False, float_format=_g4))
    return 0


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--here", action="store_true", help="run in this process, not as a job")
    parser.add_argument("--wait", action="store_true", help="follow the job until it ends")
    parser.add_argument("--backend", choices=("local", "slurm"), default="local")
    parser.add_argument("--cpus", type=int, default=1, help="CPU cores of the job")
    _output_options(parser)


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def register(subparsers: argparse._SubParsersAction) -> None:
    area = subparsers.add_parser("attention")
    sub = area.add_subparsers(dest="attention_command", metavar="COMMAND", required=True)

    p = sub.add_parser("stats", help="per-head entropy, distance, window share and sink mass")
    _config_arguments(p, StatsConfig)
    p.add_argument("--heads", action="store_true", help="print every head, not layer means")
    _output_options(p)
    p.set_defaults(handler=_stats)

    p = sub.add_parser("compare", help="base vs a tuned checkpoint or adapter: heads that moved")
    _config_arguments(p, StatsConfig)
    p.add_argument(
        "--tuned",
        required=True,
        help="a checkpoint folder (config + safetensors; read with the base's tokenizer) or a "
        "PEFT adapter folder (applied per call on the base)",
    )
    p.add_argument("--stat", choices=STATS, default="entropy", help="the statistic to rank by")
    p.add_argument("--top", type=int, default=10, help="heads to list")
    _output_options(p)
    p.set_defaults(handler=_compare)

    p = sub.add_parser("sweep", help="make each global layer local in turn: the loss, ranked")
    _config_arguments(p, SweepConfig)
    _job_options(p)
    p.set_defaults(handler=_sweep)

    p = sub.add_parser("context", help="the head statistics against text length")
    _config_arguments(p, ContextConfig)
    _job_options(p)
    p.set_defaults(handler=_context)

    p = sub.add_parser("layout", help="local / global layers, windows, RoPE bases, head layout")
    p.add_argument("--model", default="demo", help="model: 'demo', a model folder or a hub id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_layout)
