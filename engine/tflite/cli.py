"""`python -m engine tflite ...`: inspect, list and dump .tflite / .task / .litertlm files."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.console import print_json
from engine.tflite.bundles import TFLiteFile, open_file
from engine.tflite.graph import SubgraphInfo, TensorInfo, TFLiteError
from engine.tflite.reader import TFLiteReader


def _tensor_brief(sg: SubgraphInfo, index: int) -> dict[str, Any]:
    if index < 0:
        return {"index": -1, "name": None}
    t = sg.tensors[index]
    return {"index": index, "name": t.name, "shape": list(t.shape), "dtype": t.dtype}


def model_summary(reader: TFLiteReader) -> dict[str, Any]:
    """What `inspect` shows of one model (JSON-ready)."""
    info = reader.info()
    histogram = Counter(op.opcode for sg in info.subgraphs for op in sg.ops)
    return {
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "bytes": info.file_bytes,
        "metadata": info.metadata,
        "signatures": [
            {"key": s.key, "subgraph": s.subgraph, "inputs": s.inputs, "outputs": s.outputs}
            for s in info.signatures
        ],
        "subgraphs": [
            {
                "index": sg.index,
                "name": sg.name,
                "num_ops": len(sg.ops),
                "num_tensors": len(sg.tensors),
                "constant_bytes": sum(t.buffer_bytes for t in sg.tensors),
                "inputs": [_tensor_brief(sg, i) for i in sg.inputs],
                "outputs": [_tensor_brief(sg, i) for i in sg.outputs],
            }
            for sg in info.subgraphs
        ],
        "op_histogram": dict(histogram.most_common()),
    }


def _section_entry(file: TFLiteFile, index: int) -> dict[str, Any]:
    s = file.sections[index]
    entry: dict[str, Any] = {
        "index": s.index,
        "name": s.name,
        "kind": s.kind,
        "offset": s.offset,
        "size": s.size,
        "compressed": s.compressed,
        "details": s.details,
    }
    if s.kind == "tflite":
        try:
            with file.open(s.index) as reader:
                entry["model"] = model_summary(reader)
        except TFLiteError as exc:  # one damaged section does not hide the others
            entry["error"] = str(exc)
    return entry


def _inspect(args: argparse.Namespace) -> int:

    file = open_file(args.file)
    data: dict[str, Any] = {"file": str(file.path), "format": file.format}
    if file.format == "tflite":
        with file.open() as reader:
            data |= model_summary(reader)
    else:
        data["metadata"] = file.metadata
        data["sections"] = [_section_entry(file, i) for i in range(len(file.sections))]
    if args.json:
        print_json(data)
        return 0
    if file.format == "tflite":
        _print_model(data, indent="")
        return 0
    print(f"{file.path.name}  ({file.format}, {len(file.sections)} sections)")
    for key, value in file.metadata.items():
        print(f"  {key}: {value}")
    for entry in data["sections"]:
        packed = ", compressed" if entry["compressed"] else ""
        print(
            f"[{entry['index']}] {entry['name']}  {entry['kind']}  {entry['size']:,} bytes "
            f"at {entry['offset']:,}{packed}"
        )
        if "model" in entry:
            _print_model(entry["model"], indent="    ")
        elif "error" in entry:
            print(f"    error: {entry['error']}")
    return 0


_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


def numbered_runs(items: list[tuple[str, str]]) -> list[str]:
    """`(name, detail)` pairs as text, names that differ only by one number folded into one
    entry: 60 KV-cache inputs read `kv_cache_k_{0..29} [1, 3, 128, 64]` instead of 30 names."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    order: list[tuple[str, str, str] | str] = []
    for name, detail in items:
        match = _NUMBERED.match(name)
        if match is None:
            order.append(f"{name} {detail}".rstrip())
            continue
        key = (match.group(1), match.group(3), detail)
        if key not in groups:
            groups[key] = []
            order.append(key)  # type: ignore[arg-type]
        groups[key].append(int(match.group(2)))
    out = []
    for entry in order:
        if isinstance(entry, str):
            out.append(entry)
            continue
        prefix, suffix, detail = entry
        numbers = sorted(groups[entry])
        if len(numbers) == 1:
            out.append(f"{prefix}{numbers[0]}{suffix} {detail}".rstrip())
        else:
            out.append(f"{prefix}{{{_runs(numbers)}}}{suffix} {detail}".rstrip())
    return out


def _runs(numbers: list[int]) -> str:
    """0, 1, 2, 5 → "0..2,5"."""
    parts, start = [], numbers[0]
    for previous, number in zip(numbers, [*numbers[1:], None], strict=True):
        if number != previous + 1:
            parts.append(f"{start}..{previous}" if previous > start else str(start))
            start = number
    return ",".join(parts)


def _print_model(m: dict[str, Any], indent: str) -> None:
    print(f"{indent}{m['name']}  (schema v{m['version']}, {m['bytes']:,} bytes)")
    if m["description"]:
        print(f"{indent}  description: {m['description']}")
    called: dict[str, list[dict[str, Any]]] = {}  # composite decompositions, by name stem
    for sg in m["subgraphs"]:
        stem = _NUMBERED.sub(r"\1", sg["name"]).rstrip("_") if sg["name"] else ""
        if sg["index"] > 0 and stem.startswith("odml."):
            called.setdefault(stem, []).append(sg)
            continue
        ins = ", ".join(numbered_runs([(t["name"], str(t.get("shape"))) for t in sg["inputs"]]))
        outs = ", ".join(numbered_runs([(t["name"], str(t.get("shape"))) for t in sg["outputs"]]))
        print(
            f"{indent}  subgraph {sg['index']} '{sg['name']}': {sg['num_ops']} ops, "
            f"{sg['num_tensors']} tensors, {sg['constant_bytes']:,} constant bytes"
        )
        print(f"{indent}    in: {ins or '-'}  out: {outs or '-'}")
    for stem, subgraphs in called.items():
        ops = sorted({sg["num_ops"] for sg in subgraphs})
        print(
            f"{indent}  {len(subgraphs)} subgraphs '{stem}*' (composite decompositions, "
            f"{ops[0]}–{ops[-1]} ops each; `--json` lists them)"
        )
    for s in m["signatures"]:
        ins = ", ".join(numbered_runs([(name, "") for name in s["inputs"]]))
        outs = ", ".join(numbered_runs([(name, "") for name in s["outputs"]]))
        print(f"{indent}  signature '{s['key']}' (subgraph {s['subgraph']}): {ins} → {outs}")
    if m["metadata"]:
        entries = ", ".join(f"{k} ({v} bytes)" for k, v in m["metadata"].items())
        print(f"{indent}  metadata: {entries}")
    ops = ", ".join(f"{k} {v}" for k, v in m["op_histogram"].items())
    print(f"{indent}  ops: {ops}")


@contextmanager
def _models(path: str, section: str | None) -> Iterator[list[tuple[str, TFLiteReader]]]:
    """(label, reader) for the chosen section, or for every model of the file."""
    file = open_file(path)
    chosen = [file.section(section)] if section is not None else list(file.models)
    readers: list[tuple[str, TFLiteReader]] = []
    try:
        for s in chosen:
            readers.append((s.name, file.open(s.index)))
        yield readers
    finally:
        for _, reader in readers:
            reader.close()


def _ops(args: argparse.Namespace) -> int:

    rows = []
    with _models(args.file, args.section) as models:
        for label, reader in models:
            subgraphs = reader.info().subgraphs
            if args.subgraph is not None and not 0 <= args.subgraph < len(subgraphs):
                raise TFLiteError(f"{reader.name} has no subgraph {args.subgraph}.")
            for sg in subgraphs:
                if args.subgraph is not None and sg.index != args.subgraph:
                    continue
                for op in sg.ops:
                    if args.type and op.opcode.upper() != args.type.upper():
                        continue
                    rows.append(
                        {
                            "section": label,
                            "subgraph": sg.index,
                            "index": op.index,
                            "opcode": op.opcode,
                            "custom": op.custom,
                            "version": op.version,
                            "inputs": [_name(sg, i) for i in op.inputs],
                            "outputs": [_name(sg, i) for i in op.outputs],
                            "options": op.options,
                        }
                    )
    if args.json:
        print_json(rows)
        return 0
    several = len({r["section"] for r in rows}) > 1
    for r in rows:
        where = f"{r['section']}:" if several else ""
        ins = ", ".join(n or "-" for n in r["inputs"])
        print(
            f"{where}{r['subgraph']}:{r['index']:<5} {r['opcode']:<20} {ins} → "
            f"{', '.join(r['outputs'])}"
        )
    return 0


def _name(sg: SubgraphInfo, index: int) -> str | None:
    return sg.tensors[index].name if index >= 0 else None


def _quant_brief(t: TensorInfo) -> str:
    q = t.quantization
    if q is None or not q.scale:
        return ""
    if q.per_channel:
        return f"per-channel ×{len(q.scale)} (axis {q.quantized_dimension})"
    zero = q.zero_point[0] if q.zero_point else 0
    return f"scale {q.scale[0]:.6g} zero {zero}"


def _tensors(args: argparse.Namespace) -> int:

    try:
        regex = re.compile(args.pattern) if args.pattern else None
    except re.error as exc:
        raise TFLiteError(f"'{args.pattern}' is not a valid regular expression ({exc}).") from exc
    rows = []
    with _models(args.file, args.section) as models:
        for label, reader in models:
            for sg in reader.info().subgraphs:
                if args.subgraph is not None and sg.index != args.subgraph:
                    continue
                for t in sg.tensors:
                    if regex is not None and not regex.search(t.name):
                        continue
                    rows.append(
                        {
                            "section": label,
                            "subgraph": sg.index,
                            "index": t.index,
                            "name": t.name,
                            "shape": list(t.shape),
                            "dtype": t.dtype,
                            "bytes": t.buffer_bytes,
                            "buffer": t.buffer,
                            "quantization": _quant_brief(t),
                            "sparse": t.sparsity is not None,
                        }
                    )
    if args.json:
        print_json(rows)
        return 0
    several = len({r["section"] for r in rows}) > 1
    for r in rows:
        where = f"{r['section']}:" if several else ""
        size = f"{r['bytes']:,} B" if r["bytes"] else "activation"
        print(
            f"{where}{r['subgraph']}:{r['index']:<5} {r['name']}  {r['shape']} {r['dtype']}  "
            f"{size}  {r['quantization']}".rstrip()
        )
    return 0


def _dump(args: argparse.Namespace) -> int:
    from engine.tflite.dump import dump_tensors

    file = open_file(args.file)
    written = dump_tensors(
        file,
        out=args.out,
        names=args.tensor,
        pattern=args.pattern,
        all=args.all,
        section=args.section,
        subgraph=args.subgraph,
        raw=args.raw,
    )
    files = sorted({str(p) for p in written.values()})
    target = files[0] if len(files) == 1 else args.out
    print(f"wrote {len(written)} tensors to {target}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    tfl = subparsers.add_parser("tflite")
    sub = tfl.add_subparsers(dest="command", metavar="COMMAND", required=True)
    file_help = "a .tflite model, a .task bundle (zip) or a .litertlm container"
    section_help = "the bundle section (name or index); default: every model"

    inspect = sub.add_parser("inspect", help="sections, subgraphs, signatures and op counts")
    inspect.add_argument("file", help=file_help)
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.set_defaults(handler=_inspect)

    ops = sub.add_parser("ops", help="list operators with their input and output tensors")
    ops.add_argument("file", help=file_help)
    ops.add_argument("--subgraph", type=int, help="only this subgraph")
    ops.add_argument("--type", help="only this operator (e.g. FULLY_CONNECTED)")
    ops.add_argument("--section", help=section_help)
    ops.add_argument("--json", action="store_true", help="print JSON rows")
    ops.set_defaults(handler=_ops)

    tensors = sub.add_parser("tensors", help="list tensors: shape, type, bytes, quantization")
    tensors.add_argument("file", help=file_help)
    tensors.add_argument("--pattern", help="only names matching this regular expression")
    tensors.add_argument("--subgraph", type=int, help="only this subgraph")
    tensors.add_argument("--section", help=section_help)
    tensors.add_argument("--json", action="store_true", help="print JSON rows")
    tensors.set_defaults(handler=_tensors)

    dump = sub.add_parser("dump", help="write constant tensors to .npy files or .safetensors")
    dump.add_argument("file", help=file_help)
    which = dump.add_mutually_exclusive_group(required=True)
    which.add_argument("--tensor", action="append", help="a tensor name (repeatable)")
    which.add_argument("--pattern", help="every constant tensor whose name matches")
    which.add_argument("--all", action="store_true", help="every constant tensor")
    dump.add_argument(
        "--out", required=True, help="a folder for .npy files, or a file ending in .safetensors"
    )
    dump.add_argument("--section", help="the bundle section (needed when it holds several)")
    dump.add_argument("--subgraph", type=int, help="only this subgraph")
    dump.add_argument("--raw", action="store_true", help="stored values, not dequantized")
    dump.set_defaults(handler=_dump)

    from engine.tflite.cli_analysis import register_analysis
    from engine.tflite.cli_samples import register_samples
    from engine.tflite.cli_weights import register_weights

    register_analysis(sub, file_help)
    register_samples(sub)
    register_weights(sub, file_help)
