"""Diff two TFLite graphs: ops and tensors added, removed and changed, matched by name then shape.

Matching, per subgraph pair: tensors by name (the k-th tensor called X in `a` with the k-th in
`b`); ops through their name-matched outputs; the ops left over by a windowed alignment on
(opcode, input shapes, output shapes), then on opcode alone; tensors left over through the
positions of matched ops' inputs and outputs and of the subgraph inputs/outputs. A renamed
tensor therefore shows as one tensor with a changed name, not as one removed and one added.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import pandas as pd

from engine.tflite.analysis import GraphIndex, quantization_kind
from engine.tflite.graph import ModelInfo, OpInfo, SubgraphInfo, TensorInfo

STATUSES = ("added", "removed", "changed", "same")
_TENSOR_COLUMNS = [
    "subgraph_a",
    "subgraph_b",
    "index_a",
    "index_b",
    "name_a",
    "name_b",
    "status",
    "changes",
    "detail",
]
_OP_COLUMNS = [
    "subgraph_a",
    "subgraph_b",
    "index_a",
    "index_b",
    "opcode_a",
    "opcode_b",
    "status",
    "changes",
    "detail",
]


@dataclass(frozen=True)
class GraphDiff:
    """Row per tensor / op / subgraph of either side; `summary` counts rows by status."""

    tensors: pd.DataFrame  # subgraph_a/b, index_a/b, name_a/b, status, changes, detail
    ops: pd.DataFrame  # subgraph_a/b, index_a/b, opcode_a/b, status, changes, detail
    subgraphs: pd.DataFrame  # index_a/b, name_a/b, status
    summary: dict[str, dict[str, int]]  # {"tensors": {"added": n, ...}, "ops": ..., "subgraphs"}

    @property
    def identical(self) -> bool:
        return all(
            counts[s] == 0
            for counts in self.summary.values()
            for s in ("added", "removed", "changed")
        )

    def changed_tensors(self) -> pd.DataFrame:
        return self.tensors[self.tensors["status"] != "same"].reset_index(drop=True)

    def changed_ops(self) -> pd.DataFrame:
        return self.ops[self.ops["status"] != "same"].reset_index(drop=True)


def _align(ka: Sequence[Hashable], kb: Sequence[Hashable], window: int) -> list[tuple[int, int]]:
    """Monotone pairs (i, j) with ka[i] == kb[j]. A mismatch followed by a match is one op
    changed in place; otherwise the side that reaches its next match sooner within `window`
    skips ahead. O(n · window), so fine for 10k-op graphs."""
    pairs = []
    i = j = 0
    while i < len(ka) and j < len(kb):
        if ka[i] == kb[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
            continue
        if i + 1 < len(ka) and j + 1 < len(kb) and ka[i + 1] == kb[j + 1]:
            i, j = i + 1, j + 1  # one op changed in place: leave the pair to the next pass
            continue
        skip_b = next((d for d in range(1, window) if j + d < len(kb) and kb[j + d] == ka[i]), None)
        skip_a = next((d for d in range(1, window) if i + d < len(ka) and ka[i + d] == kb[j]), None)
        if skip_a is None and skip_b is None:
            i, j = i + 1, j + 1
        elif skip_a is None or (skip_b is not None and skip_b <= skip_a):
            j += skip_b  # type: ignore[operator]
        else:
            i += skip_a
    return pairs


def _tensor_changes(a: TensorInfo, b: TensorInfo) -> list[tuple[str, str]]:
    out = []
    if a.name != b.name:
        out.append(("name", f"{a.name!r} → {b.name!r}"))
    if a.shape != b.shape:
        out.append(("shape", f"{list(a.shape)} → {list(b.shape)}"))
    if a.dtype != b.dtype:
        out.append(("dtype", f"{a.dtype} → {b.dtype}"))
    if a.quantization != b.quantization:
        ka, kb = quantization_kind(a), quantization_kind(b)
        out.append(("quantization", f"{ka} → {kb}" if ka != kb else f"{ka}, other parameters"))
    if a.is_constant != b.is_constant:
        out.append(("constant", f"{a.is_constant} → {b.is_constant}"))
    elif a.buffer_bytes != b.buffer_bytes:
        out.append(("bytes", f"{a.buffer_bytes} → {b.buffer_bytes}"))
    return out


def _op_changes(a: OpInfo, b: OpInfo, t_match: dict[int, int]) -> list[tuple[str, str]]:
    out = []
    if a.opcode != b.opcode:
        out.append(("opcode", f"{a.opcode} → {b.opcode}"))
    if a.version != b.version:
        out.append(("version", f"{a.version} → {b.version}"))
    if a.options != b.options:
        keys = sorted(k for k in {*a.options, *b.options} if a.options.get(k) != b.options.get(k))
        out.append(("options", ", ".join(keys)))
    for what, xs, ys in (("inputs", a.inputs, b.inputs), ("outputs", a.outputs, b.outputs)):
        if len(xs) != len(ys):
            out.append((what, f"{len(xs)} → {len(ys)} tensors"))
            continue
        moved = [k for k, (x, y) in enumerate(zip(xs, ys, strict=True)) if t_match.get(x, -1) != y]
        if moved:
            out.append((what, "rewired at position " + ", ".join(map(str, moved))))
    return out


def _match_subgraph(
    sa: SubgraphInfo, sb: SubgraphInfo, window: int
) -> tuple[dict[int, int], dict[int, int]]:
    """(tensor a → tensor b, op a → op b)."""
    t_match: dict[int, int] = {}
    queues: dict[str, deque[int]] = defaultdict(deque)
    for t in sb.tensors:
        if t.name:
            queues[t.name].append(t.index)
    for t in sa.tensors:
        if t.name and queues.get(t.name):
            t_match[t.index] = queues[t.name].popleft()

    gb = GraphIndex.build(sb)
    op_match: dict[int, int] = {}
    used_b: set[int] = set()
    for op in sa.ops:
        for t in op.outputs:
            pb = gb.producer[t_match[t]] if t in t_match else -1
            if pb >= 0 and pb not in used_b:
                op_match[op.index] = pb
                used_b.add(pb)
                break

    def shapes(sg: SubgraphInfo, ts: tuple[int, ...]) -> tuple:
        return tuple(sg.tensors[t].shape if t >= 0 else None for t in ts)

    keys = (
        lambda sg, op: (op.opcode, shapes(sg, op.inputs), shapes(sg, op.outputs)),
        lambda sg, op: op.opcode,
    )
    for key in keys:
        rest_a = [op for op in sa.ops if op.index not in op_match]
        rest_b = [op for op in sb.ops if op.index not in used_b]
        ka = [key(sa, op) for op in rest_a]
        kb = [key(sb, op) for op in rest_b]
        for i, j in _align(ka, kb, window):
            op_match[rest_a[i].index] = rest_b[j].index
            used_b.add(rest_b[j].index)

    taken_b = set(t_match.values())

    def pair(x: int, y: int) -> None:
        if x >= 0 and y >= 0 and x not in t_match and y not in taken_b:
            t_match[x] = y
            taken_b.add(y)

    for ia in sorted(op_match):
        a, b = sa.ops[ia], sb.ops[op_match[ia]]
        for xs, ys in ((a.inputs, b.inputs), (a.outputs, b.outputs)):
            if len(xs) == len(ys):
                for x, y in zip(xs, ys, strict=True):
                    pair(x, y)
    for xs, ys in ((sa.inputs, sb.inputs), (sa.outputs, sb.outputs)):
        for x, y in zip(xs, ys, strict=False):
            pair(x, y)
    return t_match, op_match


def _diff_subgraphs(
    sa: SubgraphInfo | None, sb: SubgraphInfo | None, window: int
) -> tuple[list[dict], list[dict], bool]:
    """Tensor rows, op rows, and whether the subgraph's inputs/outputs map onto each other."""
    ia = sa.index if sa is not None else None
    ib = sb.index if sb is not None else None
    t_match, op_match = _match_subgraph(sa, sb, window) if sa and sb else ({}, {})
    base = {"subgraph_a": ia, "subgraph_b": ib}
    tensors, ops = [], []
    for t in sa.tensors if sa else ():
        other = sb.tensors[t_match[t.index]] if t.index in t_match else None  # type: ignore[union-attr]
        changes = _tensor_changes(t, other) if other is not None else []
        tensors.append(
            base
            | {
                "index_a": t.index,
                "index_b": other.index if other else None,
                "name_a": t.name,
                "name_b": other.name if other else None,
                "status": "removed" if other is None else "changed" if changes else "same",
                "changes": ", ".join(c for c, _ in changes),
                "detail": "; ".join(f"{c} {d}" for c, d in changes),
            }
        )
    matched_b = set(t_match.values())
    for t in sb.tensors if sb else ():
        if t.index not in matched_b:
            tensors.append(
                base
                | {"index_a": None, "index_b": t.index, "name_a": None, "name_b": t.name}
                | {"status": "added", "changes": "", "detail": ""}
            )
    for op in sa.ops if sa else ():
        other = sb.ops[op_match[op.index]] if op.index in op_match else None  # type: ignore[union-attr]
        changes = _op_changes(op, other, t_match) if other is not None else []
        ops.append(
            base
            | {
                "index_a": op.index,
                "index_b": other.index if other else None,
                "opcode_a": op.opcode,
                "opcode_b": other.opcode if other else None,
                "status": "removed" if other is None else "changed" if changes else "same",
                "changes": ", ".join(c for c, _ in changes),
                "detail": "; ".join(f"{c}: {d}" for c, d in changes),
            }
        )
    matched_ops_b = set(op_match.values())
    for op in sb.ops if sb else ():
        if op.index not in matched_ops_b:
            ops.append(
                base
                | {"index_a": None, "index_b": op.index, "opcode_a": None, "opcode_b": op.opcode}
                | {"status": "added", "changes": "", "detail": ""}
            )
    io_same = bool(sa and sb) and all(
        [t_match.get(x, -1) for x in xs] == list(ys)
        for xs, ys in ((sa.inputs, sb.inputs), (sa.outputs, sb.outputs))  # type: ignore[union-attr]
    )
    return tensors, ops, io_same


def _pair_subgraphs(
    a: Sequence[SubgraphInfo], b: Sequence[SubgraphInfo]
) -> list[tuple[SubgraphInfo | None, SubgraphInfo | None]]:
    """By name where names are non-empty and unique on both sides, the rest by position."""
    names_a = Counter(s.name for s in a)
    names_b = {s.name: s for s in b if s.name and sum(x.name == s.name for x in b) == 1}
    pairs: list[tuple[SubgraphInfo | None, SubgraphInfo | None]] = []
    used_b: set[int] = set()
    left_a = []
    for s in a:
        other = names_b.get(s.name) if s.name and names_a[s.name] == 1 else None
        if other is not None:
            pairs.append((s, other))
            used_b.add(other.index)
        else:
            left_a.append(s)
    left_b = [s for s in b if s.index not in used_b]
    for k in range(max(len(left_a), len(left_b))):
        pairs.append(
            (left_a[k] if k < len(left_a) else None, left_b[k] if k < len(left_b) else None)
        )
    return sorted(pairs, key=lambda p: (p[0].index if p[0] else 1 << 30, p[1].index if p[1] else 0))


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = Counter(frame["status"]) if len(frame) else Counter()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def diff_graphs(
    a: ModelInfo | SubgraphInfo, b: ModelInfo | SubgraphInfo, *, window: int = 64
) -> GraphDiff:
    """What changed from `a` to `b`: whole models subgraph by subgraph (paired by name, then by
    position), or two subgraphs. `window` bounds how far the structural alignment looks ahead."""
    subs_a = a.subgraphs if isinstance(a, ModelInfo) else (a,)
    subs_b = b.subgraphs if isinstance(b, ModelInfo) else (b,)
    tensor_rows: list[dict] = []
    op_rows: list[dict] = []
    sub_rows = []
    for sa, sb in _pair_subgraphs(subs_a, subs_b):
        tensors, ops, io_same = _diff_subgraphs(sa, sb, window)
        tensor_rows += tensors
        op_rows += ops
        if sa is None or sb is None:
            status = "added" if sa is None else "removed"
        else:
            touched = any(r["status"] != "same" for r in (*tensors, *ops))
            status = "changed" if touched or not io_same or sa.name != sb.name else "same"
        sub_rows.append(
            {
                "index_a": sa.index if sa else None,
                "index_b": sb.index if sb else None,
                "name_a": sa.name if sa else None,
                "name_b": sb.name if sb else None,
                "status": status,
            }
        )
    tensors_frame = pd.DataFrame(tensor_rows, columns=_TENSOR_COLUMNS)
    ops_frame = pd.DataFrame(op_rows, columns=_OP_COLUMNS)
    for frame in (tensors_frame, ops_frame):
        for col in ("subgraph_a", "subgraph_b", "index_a", "index_b"):
            frame[col] = frame[col].astype("Int64")
    subs_frame = pd.DataFrame(
        sub_rows, columns=["index_a", "index_b", "name_a", "name_b", "status"]
    )
    summary = {
        "subgraphs": _counts(subs_frame),
        "tensors": _counts(tensors_frame),
        "ops": _counts(ops_frame),
    }
    return GraphDiff(tensors_frame, ops_frame, subs_frame, summary)
