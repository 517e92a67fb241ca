"""`python -m engine tflite findings|diff`: architecture findings and graph diffs from the shell."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from engine.console import print_json
from engine.tflite.bundles import open_file


def _findings(args: argparse.Namespace) -> int:
    from engine.tflite.findings import digest_from_readers, find_across
    from engine.tflite.recovered import load_hf_config, recover_config

    source = load_hf_config(args.compare) if args.compare else None
    file = open_file(args.file)
    sections = [file.section(args.section)] if args.section else list(file.models)
    readers = [file.open(s.index) for s in sections]
    try:
        infos = [r.info() for r in readers]
        digest = digest_from_readers({i.name: r for i, r in zip(infos, readers, strict=True)})
        found = find_across(infos, digest=digest)
        recovered = {
            i.name: recover_config(i, digest=digest, values=r.tensor_array)
            for i, r in zip(infos, readers, strict=True)
        }
    finally:
        for reader in readers:
            reader.close()
    subgraphs = {i.name: i.subgraphs for i in infos}
    if args.json:
        print_json(
            {
                name: {
                    "recovered": recovered[name].to_dict(),
                    **(
                        {"compare": recovered[name].compare_with(source).to_dict("records")}
                        if source is not None
                        else {}
                    ),
                    "findings": [asdict(f) for f in fs],
                }
                for name, fs in found.items()
            }
        )
        return 0
    for name, fs in found.items():
        rc = recovered[name]
        if rc.any_found:
            sg = subgraphs[name][rc.subgraph]
            print(f"{name}: config read from the graph (signature '{rc.signature}', {sg.name})")
            for row in rc.to_table(sg).to_dict("records"):
                why = row["evidence"] if row["status"] == "found" else row["how"]
                print(f"  {row['field']:<28} {row['value']:<24} {why}")
            if source is not None:
                print(f"  compared with {args.compare}:")
                for row in rc.compare_with(source).to_dict("records"):
                    mark = {True: "equal", False: "DIFFERS", None: "unknown"}[row["equal"]]
                    print(f"  {row['field']:<28} {row['recovered']:<24} {row['source']:<24} {mark}")
        print(f"{name}: {len(fs)} finding(s)")
        for f in fs:
            evidence = f"ops {list(f.evidence_ops[:8])}" + ("…" if len(f.evidence_ops) > 8 else "")
            print(f"  [{f.confidence:>6}] {f.title} — {f.detail}  ({evidence})")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from engine.tflite.diff import diff_graphs
    from engine.tflite.diff_summary import summarize

    a, b = open_file(args.a), open_file(args.b)
    with a.open(args.section_a) as ra, b.open(args.section_b) as rb:
        info_a, info_b = ra.info(), rb.info()
        result = diff_graphs(info_a, info_b)
    told = summarize(info_a, info_b, result)
    if args.json:
        print_json(
            {
                "headline": told.headline,
                "lines": list(told.lines),
                "identical": result.identical,
                "summary": result.summary,
                "ops": result.changed_ops().to_dict("records"),
                "tensors": result.changed_tensors().to_dict("records"),
            }
        )
        return 0
    print(told.headline)
    if result.identical:
        return 0
    for line in told.lines:
        print(f"  {line}")
    for what, counts in result.summary.items():
        print(f"{what:>9}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for label, table in (("ops", result.changed_ops()), ("tensors", result.changed_tensors())):
        for row in table.head(args.limit).to_dict("records"):
            keys = ("name_a", "name_b", "opcode_a", "opcode_b")
            name = next((row[k] for k in keys if isinstance(row.get(k), str) and row[k]), "")
            detail = row.get("detail") if isinstance(row.get("detail"), str) else ""
            print(f"  {label[:-1]} {row['status']:<8} {name}  {detail}")
    return 0


def register_analysis(sub: argparse._SubParsersAction, file_help: str) -> None:
    findings = sub.add_parser("findings", help="architecture findings, each with its evidence")
    findings.add_argument("file", help=file_help)
    findings.add_argument("--section", help="only this bundle section (default: every model)")
    findings.add_argument("--json", action="store_true")
    findings.add_argument(
        "--compare",
        metavar="HF_FOLDER",
        help="a Hugging Face model folder (its config.json): recovered vs source, per field",
    )
    findings.set_defaults(handler=_findings)

    diff = sub.add_parser("diff", help="ops and tensors added, removed and changed from A to B")
    diff.add_argument("a", help=file_help)
    diff.add_argument("b", help=file_help)
    diff.add_argument("--section-a", help="section of A (bundles holding several models)")
    diff.add_argument("--section-b", help="section of B")
    diff.add_argument("--limit", type=int, default=50, help="rows of each table to print")
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(handler=_diff)
