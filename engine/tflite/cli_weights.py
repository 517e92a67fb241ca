"""`python -m engine tflite weights FILE --hf FOLDER`: TFLite weights matched to their HF source."""

from __future__ import annotations

import argparse
from typing import Any

from engine.console import print_json

WORST = 15  # rows of the worst-tensor table


def register_weights(sub: argparse._SubParsersAction, file_help: str) -> None:
    weights = sub.add_parser(
        "weights",
        help="match each weight tensor to the Hugging Face parameter it came from, with |Δ|",
    )
    weights.add_argument("file", help=file_help)
    weights.add_argument("--hf", required=True, help="the source Hugging Face model folder")
    weights.add_argument("--section", help="the bundle section (needed when it holds several)")
    weights.add_argument("--top", type=int, default=WORST, help="rows of the worst tensors")
    weights.add_argument("--json", action="store_true", help="print every row as JSON")
    weights.set_defaults(handler=_weights)


def _ratio(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.3f}"


def _weights(args: argparse.Namespace) -> int:
    from engine.tflite.bundles import open_file
    from engine.tflite.weights import match_weights

    file = open_file(args.file)
    with file.open(args.section) as reader:
        match = match_weights(reader, args.hf)
    if args.json:
        print_json(match.to_dict())
        return 0
    print(f"{match.model} ← {match.hf_folder}  ({match.seconds:.1f} s)")
    print(match.summary())
    _print_sharing(match.shared(), match.copied())
    rows = sorted(match.rows, key=lambda r: (r.step_ratio, r.max_abs), reverse=True)
    seen: set[int] = set()
    worst = [r for r in rows if not (r.buffer in seen or seen.add(r.buffer))][: args.top]
    print("\nworst tensors (one per buffer, by |Δ| / step, then max |Δ|):")
    print(f"  {'where':<18} {'dtype':<8} {'quantization':<22} {'max |Δ|':>10} {'|Δ|/step':>9}  HF")
    for r in worst:
        hf = r.hf[0] + (f" (+{len(r.hf) - 1} identical)" if len(r.hf) > 1 else "")
        how = "" if r.transform == "as stored" else f"  [{r.transform}]"
        print(
            f"  {r.subgraph_name + ':' + str(r.tensor):<18} {r.dtype:<8} {r.quantization:<22} "
            f"{r.max_abs:>10.3g} {_ratio(r.step_ratio) if r.step else '-':>9}  {hf}{how}"
        )
    _print_unmatched(match.to_dict())
    return 0


def _print_sharing(shared: dict[str, tuple[str, ...]], copied: dict[str, tuple[str, ...]]) -> None:
    if shared:
        places = sorted({", ".join(s) for s in shared.values()})
        print(
            f"{len(shared)} HF parameters appear in several subgraphs through one shared "
            f"buffer ({'; '.join(places)})"
        )
    for param, where in sorted(copied.items()):
        print(f"{param} is stored in several buffers ({', '.join(where)})")


def _print_unmatched(data: dict[str, Any]) -> None:
    tfl = data["tflite_unmatched"]
    print(f"\nTFLite constants with no HF parameter: {len(tfl)}")
    counts: dict[str, int] = {}
    for t in tfl:
        counts[t["reason"]] = counts.get(t["reason"], 0) + 1
    for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>5}  {reason}")
    for t in tfl:
        if t["reason"].startswith("no HF"):
            print(f"         {t['subgraph_name']}:{t['tensor']} {t['dtype']} {t['shape']}")
    hf = data["hf_unmatched"]
    print(f"\nHF parameters with no TFLite constant: {len(hf) or 'none'}")
    for p in hf:
        print(f"  {p['name']} {list(p['shape'])} {p['dtype']}: {p['reason']}")
