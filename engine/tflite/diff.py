"""Diff two TFLite graphs: ops and tensors added, removed and changed, aligned by structure + layer.

Matching, per subgraph pair: ops by a sequence alignment (difflib) of their keys in op order, first
(layer, opcode, input shapes, output shapes), then without the layer, then opcode alone, then ops
left face to face in a gap of equal length on both sides (one op changed in place); the layer is the
one the op's output names carry (`layer_3/...`, or the converter's HF module path
`...DecoderLayer_3/...`), so an added layer aligns as one block and never shifts its neighbours.
Tensors then follow the positions of matched ops' inputs and outputs, the subgraph inputs/outputs
(by name, then position), and last their names. Tensor names are not trusted first: the converter
numbers its location names (`...self_attn;3`), and the numbers shift when a layer is added. A
renamed tensor therefore shows as one tensor with a changed name, not as one removed and one added.

Subgraphs pair by name, then position, except the ones an op calls (a composite's decomposition,
a WHILE body): those pair through the matched calling ops, since their numbering shifts too.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import pandas as pd

from engine.tflite.analysis import layer_of_name, quantization_kind
from engine.tflite.graph import ModelInfo, OpInfo, SubgraphInfo, TensorInfo

STATUSES = ("added", "removed", "changed", "same")
_TENSOR_COLUMNS = [
    "subgraph_a",
    "subgraph_b",
    "index_a",
    "index_b",
    "name_a",
    "name_b",
    "layer_a",
    "layer_b",
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
    "layer_a",
    "layer_b",
    "status",
    "changes",
    "detail",
]
_INT_COLUMNS = ("subgraph_a", "subgraph_b", "index_a", "index_b", "layer_a", "layer_b")

# litert-torch names a tensor by the HF module path of the op that made it, e.g.
# `.../Qwen2Model_model/...Qwen2DecoderLayer_3/...Qwen2MLP_mlp/...Linear_up_proj;2`.
_MODULE_LAYER = re.compile(r"(?:Layer|Block)_(\d{1,4})(?=$|[/;])")


def module_layer(name: str) -> int | None:
    """The layer a tensor name carries: `layer_3/...` (analysis.layer_of_name), else the converter's
    HF module path (`...DecoderLayer_3/...`). A fused name (`loc1;;loc2;N`) speaks by its first
    location: the op's own; the others are where shared inputs (RoPE tables) were made."""
    first = name.split(";", 1)[0]
    found = layer_of_name(first)
    if found is not None:
        return found
    match = _MODULE_LAYER.search(first)
    return int(match.group(1)) if match else None


def op_layers(sg: SubgraphInfo) -> tuple[int | None, ...]:
    """Each op's layer, by the names of its outputs, then of its constant inputs (the rule of
    analysis.layer_groups, reading converter names too)."""
    out = []
    for op in sg.ops:
        layer = next(
            (
                x
                for t in op.outputs
                if t >= 0 and (x := module_layer(sg.tensors[t].name)) is not None
            ),
            None,
        )
        if layer is None:
            layer = next(
                (
                    x
                    for t in op.inputs
                    if t >= 0
                    and sg.tensors[t].is_constant
                    and (x := module_layer(sg.tensors[t].name)) is not None
                ),
                None,
            )
        out.append(layer)
    return tuple(out)


def called_subgraphs(op: OpInfo) -> dict[str, int]:
    """The subgraphs an op calls by option (`decomposition_subgraph_index`, a WHILE body...)."""
    return {
        k: v
        for k, v in op.options.items()
        if k.endswith("subgraph_index") and isinstance(v, int) and v >= 0
    }


@dataclass(frozen=True)
class GraphDiff:
    """Row per tensor / op / subgraph of either side; `summary` counts rows by status."""

    tensors: pd.DataFrame  # subgraph_a/b, index_a/b, name_a/b, layer_a/b, status, changes, detail
    ops: pd.DataFrame  # subgraph_a/b, index_a/b, opcode_a/b, layer_a/b, status, changes, detail
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
    skips ahead. O(n · window): the fallback for keys too repetitive for difflib (opcode alone)."""
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


def _sequence_pairs(ka: Sequence[Hashable], kb: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Monotone pairs (i, j) with ka[i] == kb[j]: difflib's longest blocks (an inserted layer is
    one inserted block wherever it sits). Between two blocks of 2+ ops, a gap as long on both
    sides pairs face to face where keys agree: among look-alike ops (gate and up projections)
    difflib would pick the first, shifting the pair against its neighbours."""
    matcher = difflib.SequenceMatcher(None, ka, kb, autojunk=False)
    blocks = matcher.get_matching_blocks()  # ends with a (len(ka), len(kb), 0) sentinel
    pairs: list[tuple[int, int]] = []
    a0 = b0 = 0
    for block in blocks:
        if block.size < 2 and block.a < len(ka):
            continue
        if block.a - a0 == block.b - b0:
            pairs += [(a0 + k, b0 + k) for k in range(block.a - a0) if ka[a0 + k] == kb[b0 + k]]
        else:
            pairs += [
                (small.a + k, small.b + k)
                for small in blocks
                if small.size < 2 and a0 <= small.a < block.a and b0 <= small.b < block.b
                for k in range(small.size)
            ]
        pairs += [(block.a + k, block.b + k) for k in range(block.size)]
        a0, b0 = block.a + block.size, block.b + block.size
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


def _op_changes(
    a: OpInfo, b: OpInfo, t_match: dict[int, int], sub_match: dict[int, int]
) -> list[tuple[str, str]]:
    out = []
    if a.opcode != b.opcode:
        out.append(("opcode", f"{a.opcode} → {b.opcode}"))
    if a.version != b.version:
        out.append(("version", f"{a.version} → {b.version}"))
    calls_a, calls_b = called_subgraphs(a), called_subgraphs(b)
    keys = sorted(
        k
        for k in {*a.options, *b.options}
        if a.options.get(k) != b.options.get(k)
        # A called subgraph renumbered is the same call: it counts where the pair is not matched.
        and not (k in calls_a and k in calls_b and sub_match.get(calls_a[k]) == calls_b[k])
    )
    if keys:
        out.append(("options", ", ".join(keys)))
    for what, xs, ys in (("inputs", a.inputs, b.inputs), ("outputs", a.outputs, b.outputs)):
        if len(xs) != len(ys):
            out.append((what, f"{len(xs)} → {len(ys)} tensors"))
            continue
        moved = [k for k, (x, y) in enumerate(zip(xs, ys, strict=True)) if t_match.get(x, -1) != y]
        if moved:
            out.append((what, "rewired at position " + ", ".join(map(str, moved))))
    return out


def _shapes(sg: SubgraphInfo, ts: tuple[int, ...]) -> tuple:
    return tuple(sg.tensors[t].shape if t >= 0 else None for t in ts)


def _match_ops(
    sa: SubgraphInfo,
    sb: SubgraphInfo,
    layers_a: tuple[int | None, ...],
    layers_b: tuple[int | None, ...],
    window: int,
) -> dict[int, int]:
    """op a → op b, by keys of falling strictness over the ops still unmatched."""
    io = {
        id(sg): [(op.opcode, _shapes(sg, op.inputs), _shapes(sg, op.outputs)) for op in sg.ops]
        for sg in (sa, sb)
    }
    layers = {id(sa): layers_a, id(sb): layers_b}
    stages: list[tuple[Callable[[SubgraphInfo, OpInfo], Hashable], bool]] = [
        (lambda sg, op: (layers[id(sg)][op.index], io[id(sg)][op.index]), True),
        (lambda sg, op: io[id(sg)][op.index], True),
        (lambda sg, op: op.opcode, False),
    ]
    op_match: dict[int, int] = {}
    used_b: set[int] = set()
    for key, exact in stages:
        rest_a = [op for op in sa.ops if op.index not in op_match]
        rest_b = [op for op in sb.ops if op.index not in used_b]
        ka = [key(sa, op) for op in rest_a]
        kb = [key(sb, op) for op in rest_b]
        pairs = _sequence_pairs(ka, kb) if exact else _align(ka, kb, window)
        for i, j in pairs:
            op_match[rest_a[i].index] = rest_b[j].index
            used_b.add(rest_b[j].index)
    # Gaps of equal length between matched ops: the ops face to face changed in place.
    matched = sorted(op_match.items())
    bounds = [(-1, -1), *matched, (len(sa.ops), len(sb.ops))]
    for (a0, b0), (a1, b1) in itertools.pairwise(bounds):
        gap_a = [i for i in range(a0 + 1, a1) if i not in op_match]
        gap_b = [j for j in range(b0 + 1, b1) if j not in used_b]
        if gap_a and len(gap_a) == len(gap_b) and b1 > b0:
            for i, j in zip(gap_a, gap_b, strict=True):
                op_match[i] = j
                used_b.add(j)
    return op_match


def _match_tensors(sa: SubgraphInfo, sb: SubgraphInfo, op_match: dict[int, int]) -> dict[int, int]:
    """tensor a → tensor b: through matched ops' positions, the subgraph's inputs and outputs,
    then names left unique on both sides."""
    t_match: dict[int, int] = {}
    taken_b: set[int] = set()

    def pair(x: int, y: int) -> None:
        if x >= 0 and y >= 0 and x not in t_match and y not in taken_b:
            t_match[x] = y
            taken_b.add(y)

    for ia in sorted(op_match):
        a, b = sa.ops[ia], sb.ops[op_match[ia]]
        for xs, ys in ((a.outputs, b.outputs), (a.inputs, b.inputs)):
            if len(xs) == len(ys):
                for x, y in zip(xs, ys, strict=True):
                    pair(x, y)
    for xs, ys in ((sa.inputs, sb.inputs), (sa.outputs, sb.outputs)):
        by_name = {sb.tensors[y].name: y for y in ys if y >= 0 and sb.tensors[y].name}
        for x in xs:
            if x >= 0 and sa.tensors[x].name in by_name:
                pair(x, by_name[sa.tensors[x].name])
        for x, y in zip(xs, ys, strict=False):
            pair(x, y)
    names_a = Counter(t.name for t in sa.tensors if t.index not in t_match)
    left_b: dict[str, list[int]] = {}
    for t in sb.tensors:
        if t.name and t.index not in taken_b and names_a[t.name] == 1:
            left_b.setdefault(t.name, []).append(t.index)
    for t in sa.tensors:
        if t.index not in t_match and len(left_b.get(t.name, ())) == 1:
            pair(t.index, left_b[t.name][0])
    return t_match


def _tensor_layers(sg: SubgraphInfo, layers: tuple[int | None, ...]) -> list[int | None]:
    """A tensor's layer: its name's, else its producer's."""
    out: list[int | None] = [module_layer(t.name) for t in sg.tensors]
    for op, layer in zip(sg.ops, layers, strict=True):
        for t in op.outputs:
            if t >= 0 and out[t] is None:
                out[t] = layer
    return out


@dataclass(frozen=True)
class _Matched:
    """One subgraph pair's alignment: each side's op layers, op pairs and tensor pairs (a → b)."""

    layers_a: tuple[int | None, ...]
    layers_b: tuple[int | None, ...]
    ops: dict[int, int]
    tensors: dict[int, int]


def _match(sa: SubgraphInfo | None, sb: SubgraphInfo | None, window: int) -> _Matched:
    la = op_layers(sa) if sa else ()
    lb = op_layers(sb) if sb else ()
    op_match = _match_ops(sa, sb, la, lb, window) if sa and sb else {}
    t_match = _match_tensors(sa, sb, op_match) if sa and sb else {}
    return _Matched(la, lb, op_match, t_match)


def _rows(
    sa: SubgraphInfo | None, sb: SubgraphInfo | None, m: _Matched, sub_match: dict[int, int]
) -> tuple[list[dict], list[dict], bool]:
    """Tensor rows, op rows, and whether the subgraph's inputs/outputs map onto each other."""
    t_match, op_match = m.tensors, m.ops
    tla = _tensor_layers(sa, m.layers_a) if sa else []
    tlb = _tensor_layers(sb, m.layers_b) if sb else []
    base = {"subgraph_a": sa.index if sa else None, "subgraph_b": sb.index if sb else None}
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
                "layer_a": tla[t.index],
                "layer_b": tlb[other.index] if other else None,
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
                | {"layer_a": None, "layer_b": tlb[t.index]}
                | {"status": "added", "changes": "", "detail": ""}
            )
    for op in sa.ops if sa else ():
        other = sb.ops[op_match[op.index]] if op.index in op_match else None  # type: ignore[union-attr]
        changes = _op_changes(op, other, t_match, sub_match) if other is not None else []
        ops.append(
            base
            | {
                "index_a": op.index,
                "index_b": other.index if other else None,
                "opcode_a": op.opcode,
                "opcode_b": other.opcode if other else None,
                "layer_a": m.layers_a[op.index],
                "layer_b": m.layers_b[other.index] if other else None,
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
                | {"layer_a": None, "layer_b": m.layers_b[op.index]}
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
    return pairs


def _called(subs: Sequence[SubgraphInfo]) -> set[int]:
    return {i for sg in subs for op in sg.ops for i in called_subgraphs(op).values()}


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = Counter(frame["status"]) if len(frame) else Counter()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def diff_graphs(
    a: ModelInfo | SubgraphInfo, b: ModelInfo | SubgraphInfo, *, window: int = 64
) -> GraphDiff:
    """What changed from `a` to `b`: whole models subgraph by subgraph (called subgraphs through
    their callers, the others by name, then position), or two subgraphs. `window` bounds how far
    the last, opcode-only alignment looks ahead."""
    subs_a = a.subgraphs if isinstance(a, ModelInfo) else (a,)
    subs_b = b.subgraphs if isinstance(b, ModelInfo) else (b,)
    by_index_a = {s.index: s for s in subs_a}
    by_index_b = {s.index: s for s in subs_b}
    called_a, called_b = _called(subs_a), _called(subs_b)
    queue = deque(
        _pair_subgraphs(
            [s for s in subs_a if s.index not in called_a],
            [s for s in subs_b if s.index not in called_b],
        )
    )
    sub_match: dict[int, int] = {}  # subgraph a → b, filled in as their callers are matched
    matched: list[tuple[SubgraphInfo | None, SubgraphInfo | None, _Matched]] = []
    seen_a: set[int] = set()
    seen_b: set[int] = set()
    while True:
        while queue:
            sa, sb = queue.popleft()
            seen_a |= {sa.index} if sa else set()
            seen_b |= {sb.index} if sb else set()
            if sa and sb:
                sub_match[sa.index] = sb.index
            m = _match(sa, sb, window)
            matched.append((sa, sb, m))
            for ia, ib in m.ops.items():
                calls_b = called_subgraphs(sb.ops[ib])  # type: ignore[union-attr]
                for k, x in called_subgraphs(sa.ops[ia]).items():  # type: ignore[union-attr]
                    y = calls_b.get(k)
                    if y in by_index_b and x in by_index_a and x not in seen_a and y not in seen_b:
                        seen_a.add(x)
                        seen_b.add(y)  # type: ignore[arg-type]
                        queue.append((by_index_a[x], by_index_b[y]))  # type: ignore[index]
        rest_a = [s for s in subs_a if s.index not in seen_a]
        rest_b = [s for s in subs_b if s.index not in seen_b]
        if not rest_a and not rest_b:
            break
        queue.extend(_pair_subgraphs(rest_a, rest_b))
    matched.sort(key=lambda p: (p[0].index if p[0] else 1 << 30, p[1].index if p[1] else 0))
    tensor_rows: list[dict] = []
    op_rows: list[dict] = []
    sub_rows = []
    for sa, sb, m in matched:
        tensors, ops, io_same = _rows(sa, sb, m, sub_match)
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
        for col in _INT_COLUMNS:
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
