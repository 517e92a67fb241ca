"""A graph diff read as the change that was made: weights quantized, layers added, sizes.

Every row of a `GraphDiff` lands in one bucket below, and the headline names each non-empty bucket;
"nothing else changed" is said only when no row is left over (`DiffSummary.other` is empty).
Weights count once per buffer (prefill and decode read the same ones); layers come from the
names (`diff.op_layers`).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pandas as pd

from engine.tflite.analysis import GraphIndex, quantization_kind
from engine.tflite.diff import GraphDiff, called_subgraphs, op_layers
from engine.tflite.graph import ModelInfo, SubgraphInfo

# `odml.rms_norm.impl_4` → `odml.rms_norm`: the converter numbers composites' decompositions.
_SUBGRAPH_STEM = re.compile(r"(?:\.impl)?(?:_\d+)?$")
_WEIGHT_CHANGES = frozenset({"dtype", "quantization", "bytes"})


@dataclass(frozen=True)
class WeightChange:
    """Constant buffers whose type changed, grouped by who reads them and how."""

    readers: tuple[str, ...]  # opcodes reading the buffer in B, looking through DEQUANTIZE
    dtype_a: str
    dtype_b: str
    quantization_b: str  # none / per-tensor / per-channel
    buffers: int
    tensors: int  # tensor entries over all subgraphs (a buffer read by two signatures: 2)
    bytes_a: int
    bytes_b: int


@dataclass(frozen=True)
class LayerChange:
    """A layer of one subgraph whose op count differs: added, removed, or grown / shrunk."""

    subgraph: str
    layer: int
    ops_a: int
    ops_b: int
    added: str  # op types of the ops added to it, "FULLY_CONNECTED×7, MUL×9"
    removed: str


@dataclass(frozen=True)
class DiffSummary:
    headline: str
    lines: tuple[str, ...]  # the facts behind the headline, one per line
    size_a: int
    size_b: int
    layers_added: tuple[int, ...]
    layers_removed: tuple[int, ...]
    layer_changes: tuple[LayerChange, ...]
    weights: tuple[WeightChange, ...]
    ops_added: int
    ops_removed: int
    tensors_added: int
    tensors_removed: int
    weights_added: int  # constant buffers of B matched to none of A
    weight_bytes_added: int
    ops_retyped: dict[str, int]  # "FULLY_CONNECTED → BATCH_MATMUL": n
    dequantize_added: int
    kv_cache_inputs: dict[str, tuple[int, int]]  # signature → (A, B)
    subgraphs_added: dict[str, int]  # name stem → n
    subgraphs_removed: dict[str, int]
    subgraphs_renumbered: int  # paired through their callers, only the name differs
    tensors_renamed: int  # only the name differs (the converter's location numbers shift)
    ops_rewired: tuple[str, ...]
    other: tuple[str, ...] = field(default=())  # rows no bucket explains, as text

    @property
    def nothing_else(self) -> bool:
        return not self.other


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _weights_verb(weights: tuple[WeightChange, ...]) -> str:
    floats = [(w.dtype_a.startswith("float"), w.dtype_b.startswith("float")) for w in weights]
    if all(a and not b for a, b in floats):
        return "weights quantized"
    if all(b and not a for a, b in floats):
        return "weights dequantized"
    return "weights changed type or quantization"


def _ranges(xs: tuple[int, ...]) -> str:
    """(3, 4, 5, 9) → "3–5, 9"."""
    runs: list[list[int]] = []
    for x in xs:
        if runs and x == runs[-1][-1] + 1:
            runs[-1].append(x)
        else:
            runs.append([x])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _types(opcodes: list[str]) -> str:
    return ", ".join(f"{code}×{n}" for code, n in Counter(opcodes).most_common())


def _readers(sg: SubgraphInfo, gi: GraphIndex, tensor: int) -> set[str]:
    out = set()
    for c in gi.consumers[tensor]:
        op = sg.ops[c]
        if op.opcode == "DEQUANTIZE":
            out |= {sg.ops[k].opcode for t in op.outputs for k in gi.consumers[t]}
        else:
            out.add(op.opcode)
    return out


def _kv_inputs(info: ModelInfo) -> dict[str, int]:
    return {s.key: sum("kv_cache" in name for name in s.inputs) for s in info.signatures}


def _layer_word(info: ModelInfo, layers: tuple[int, ...]) -> str:
    names = (t.name for sg in info.subgraphs for t in sg.tensors)
    decoder = any(
        f"DecoderLayer_{x}/" in n or f"DecoderLayer_{x};" in n for n in names for x in layers[:1]
    )
    return "decoder layer" if decoder else "layer"


def _weights(a: ModelInfo, b: ModelInfo, rows: pd.DataFrame) -> tuple[list[WeightChange], set[int]]:
    """Weight changes grouped, and the tensor rows (by frame index) they explain."""
    subs_a = {s.index: s for s in a.subgraphs}
    subs_b = {s.index: s for s in b.subgraphs}
    index_b = {s.index: GraphIndex.build(s) for s in b.subgraphs}
    per_buffer: dict[int, dict] = {}
    explained: set[int] = set()
    for k, row in rows.iterrows():
        if set(row["changes"].split(", ")) - _WEIGHT_CHANGES:
            continue
        ta = subs_a[row["subgraph_a"]].tensors[row["index_a"]]
        sb = subs_b[row["subgraph_b"]]
        tb = sb.tensors[row["index_b"]]
        if not (ta.is_constant and tb.is_constant):
            continue
        explained.add(k)
        entry = per_buffer.setdefault(
            tb.buffer,
            {"a": ta, "b": tb, "tensors": 0, "readers": set()},
        )
        entry["tensors"] += 1
        entry["readers"] |= _readers(sb, index_b[sb.index], tb.index)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for entry in per_buffer.values():
        ta, tb = entry["a"], entry["b"]
        key = (tuple(sorted(entry["readers"])), ta.dtype, tb.dtype, quantization_kind(tb))
        groups[key].append(entry)
    out = [
        WeightChange(
            readers,
            dtype_a,
            dtype_b,
            quant,
            len(entries),
            sum(e["tensors"] for e in entries),
            sum(e["a"].buffer_bytes for e in entries),
            sum(e["b"].buffer_bytes for e in entries),
        )
        for (readers, dtype_a, dtype_b, quant), entries in groups.items()
    ]
    return sorted(out, key=lambda w: -w.buffers), explained


def _layer_changes(
    a: ModelInfo, b: ModelInfo, diff: GraphDiff
) -> tuple[list[LayerChange], set[int], set[int]]:
    """Per top-level subgraph pair (not a called one), the layers whose op count differs; and the
    layers only B has, only A has, over all of them."""
    pairs = diff.subgraphs.dropna(subset=["index_a", "index_b"])
    called_a = {i for s in a.subgraphs for op in s.ops for i in called_subgraphs(op).values()}
    ops = diff.ops
    out: list[LayerChange] = []
    only_b: set[int] = set()
    only_a: set[int] = set()
    for ia, ib in zip(pairs["index_a"], pairs["index_b"], strict=True):
        if ia in called_a:
            continue
        sa, sb = a.subgraphs[int(ia)], b.subgraphs[int(ib)]
        count_a = Counter(x for x in op_layers(sa) if x is not None)
        count_b = Counter(x for x in op_layers(sb) if x is not None)
        only_b |= set(count_b) - set(count_a)
        only_a |= set(count_a) - set(count_b)
        mine = ops[(ops["subgraph_a"] == ia) & (ops["subgraph_b"] == ib)]
        for layer in sorted({*count_a, *count_b}):
            if count_a[layer] == count_b[layer]:
                continue
            added = mine[(mine["status"] == "added") & (mine["layer_b"] == layer)]
            removed = mine[(mine["status"] == "removed") & (mine["layer_a"] == layer)]
            out.append(
                LayerChange(
                    sb.name or f"subgraph {ib}",
                    layer,
                    count_a[layer],
                    count_b[layer],
                    _types(list(added["opcode_b"])),
                    _types(list(removed["opcode_a"])),
                )
            )
    return out, only_b, only_a


def _stem(name: str | None) -> str:
    return _SUBGRAPH_STEM.sub("", name or "") or "unnamed"


def _renumbered(diff: GraphDiff) -> int:
    """Subgraph pairs whose names differ and whose rows differ in names only."""
    count = 0
    renamed = diff.subgraphs[
        (diff.subgraphs["status"] == "changed")
        & (diff.subgraphs["name_a"] != diff.subgraphs["name_b"])
    ]
    for ia, ib in zip(renamed["index_a"], renamed["index_b"], strict=True):
        rows = pd.concat(
            [
                frame[(frame["subgraph_a"] == ia) & (frame["subgraph_b"] == ib)]
                for frame in (diff.tensors, diff.ops)
            ]
        )
        count += bool(((rows["status"] == "same") | (rows["changes"] == "name")).all())
    return count


def _rewired_text(
    sb: SubgraphInfo,
    index: tuple[tuple[int | None, ...], GraphIndex],
    row: pd.Series,
    new_layers: set[int],
) -> str:
    op = sb.ops[int(row["index_b"])]
    layers, gi = index
    producers = {gi.producer[t] for t in op.inputs if t >= 0} - {-1}
    reads_new = any(layers[p] in new_layers for p in producers)
    where = f"layer {row['layer_b']}" if not pd.isna(row["layer_b"]) else "outside any layer"
    tail = ", now reads the added layer's output" if reads_new else ""
    return f"{sb.name or 'subgraph'} op {op.index} {op.opcode} ({where}){tail}"


def summarize(a: ModelInfo, b: ModelInfo, diff: GraphDiff) -> DiffSummary:
    """The diff of `a` → `b` told as the change made: see the module docstring."""
    tensors, ops, subs = diff.tensors, diff.ops, diff.subgraphs
    changed_t = tensors[tensors["status"] == "changed"]
    weights, explained = _weights(a, b, changed_t)
    renamed = changed_t[changed_t["changes"] == "name"]
    other = [
        f"tensor {r.name_b}: {r.detail}"
        for k, r in changed_t.iterrows()
        if k not in explained and r.changes != "name"
    ]
    changed_o = ops[ops["status"] == "changed"]
    retyped = Counter(
        f"{r.opcode_a} → {r.opcode_b}" for r in changed_o.itertuples() if r.opcode_a != r.opcode_b
    )
    layer_changes, new_layers, gone_layers = _layer_changes(a, b, diff)
    rewired = []
    indexed: dict[int, tuple[tuple[int | None, ...], GraphIndex]] = {}
    for _, r in changed_o.iterrows():
        kinds = set(r["changes"].split(", "))
        if kinds <= {"inputs"} and "rewired" in r["detail"]:
            sb = b.subgraphs[int(r["subgraph_b"])]
            if sb.index not in indexed:
                indexed[sb.index] = (op_layers(sb), GraphIndex.build(sb))
            rewired.append(_rewired_text(sb, indexed[sb.index], r, new_layers))
        elif kinds - {"opcode"}:
            other.append(f"op {r['opcode_a']} (A #{r['index_a']}): {r['detail']}")
    added_o, removed_o = ops[ops["status"] == "added"], ops[ops["status"] == "removed"]
    added_t, removed_t = (
        tensors[tensors["status"] == "added"],
        tensors[tensors["status"] == "removed"],
    )
    buffers_a_matched = {
        b.subgraphs[int(r.subgraph_b)].tensors[int(r.index_b)].buffer
        for r in tensors.dropna(subset=["index_a", "index_b"]).itertuples()
    }
    new_buffers: dict[int, int] = {}
    for s in b.subgraphs:
        for t in s.tensors:
            if t.is_constant and t.buffer not in buffers_a_matched:
                new_buffers[t.buffer] = t.buffer_bytes
    dequantize_added = int((added_o["opcode_b"] == "DEQUANTIZE").sum())
    kv_a, kv_b = _kv_inputs(a), _kv_inputs(b)
    kv = {k: (kv_a[k], kv_b[k]) for k in kv_a if k in kv_b and kv_a[k] != kv_b[k]}
    subs_added = Counter(_stem(n) for n in subs[subs["status"] == "added"]["name_b"])
    subs_removed = Counter(_stem(n) for n in subs[subs["status"] == "removed"]["name_a"])

    facts = DiffSummary(
        headline="",
        lines=(),
        size_a=a.file_bytes,
        size_b=b.file_bytes,
        layers_added=tuple(sorted(new_layers)),
        layers_removed=tuple(sorted(gone_layers)),
        layer_changes=tuple(layer_changes),
        weights=tuple(weights),
        ops_added=len(added_o),
        ops_removed=len(removed_o),
        tensors_added=len(added_t),
        tensors_removed=len(removed_t),
        weights_added=len(new_buffers),
        weight_bytes_added=sum(new_buffers.values()),
        ops_retyped=dict(retyped),
        dequantize_added=dequantize_added,
        kv_cache_inputs=kv,
        subgraphs_added=dict(subs_added),
        subgraphs_removed=dict(subs_removed),
        subgraphs_renumbered=_renumbered(diff),
        tensors_renamed=len(renamed),
        ops_rewired=tuple(rewired),
        other=tuple(other),
    )
    headline, lines = _tell(a, b, diff, facts)
    return dataclasses.replace(facts, headline=headline, lines=tuple(lines))


def _kv_text(kv: dict[str, tuple[int, int]]) -> str:
    if len({v for v in kv.values()}) == 1:
        x, y = next(iter(kv.values()))
        return f"kv cache inputs {x} → {y}"
    return ", ".join(f"{k} kv cache inputs {x} → {y}" for k, (x, y) in kv.items())


def _tell(a: ModelInfo, b: ModelInfo, diff: GraphDiff, s: DiffSummary) -> tuple[str, list[str]]:
    if diff.identical:
        return "identical graphs", []
    parts: list[str] = []
    lines: list[str] = []
    for layers, verb, info in ((s.layers_added, "added", b), (s.layers_removed, "removed", a)):
        if not layers:
            continue
        word = _layer_word(info, layers)
        count = "one" if len(layers) == 1 else str(len(layers))
        plural = "" if len(layers) == 1 else "s"
        which = _ranges(layers)
        text = f"{count} {word}{plural} {verb} ({'layer' + plural} {which})"
        sign = "+" if verb == "added" else "−"
        n_ops = s.ops_added if verb == "added" else s.ops_removed
        n_t = s.tensors_added if verb == "added" else s.tensors_removed
        text += f": {sign}{n_ops} ops, {sign}{n_t} tensors"
        if verb == "added":
            text += f" ({s.weights_added} weights, {_mb(s.weight_bytes_added)})"
        parts.append(text)
    for w in s.weights:
        readers = " + ".join(w.readers) or "no op"
        noun = "weight tensor" if w.buffers == 1 else "weight tensors"
        parts.append(f"{w.buffers} {readers} {noun} {w.dtype_a} → {w.dtype_b} ({w.quantization_b})")
        lines.append(
            f"weights read by {readers}: {_n(w.buffers, 'buffer')} ({w.tensors} tensor entries "
            f"over the subgraphs), {w.dtype_a} → {w.dtype_b} {w.quantization_b}, "
            f"{_mb(w.bytes_a)} → {_mb(w.bytes_b)}"
        )
    if s.weights and not (s.layers_added or s.layers_removed):
        parts[-len(s.weights)] = f"{_weights_verb(s.weights)}: {parts[-len(s.weights)]}"
        retyped = sum(s.ops_retyped.values())
        parts.append(
            f"{_n(retyped, 'op')} changed type, {_n(s.dequantize_added, 'DEQUANTIZE op')} added"
            if retyped or s.dequantize_added
            else "no op changed type or gained a DEQUANTIZE"
        )
    elif s.ops_retyped:
        parts.append(f"{_n(sum(s.ops_retyped.values()), 'op')} changed type")
    if s.kv_cache_inputs:
        parts.append(_kv_text(s.kv_cache_inputs))
    if s.size_a and s.size_b:  # 0: a graph built in memory, no file
        parts.append(f"size {_mb(s.size_a)} → {_mb(s.size_b)}")
    if not s.layers_added and not s.layers_removed and (s.ops_added or s.ops_removed):
        parts.append(f"+{s.ops_added} / −{s.ops_removed} ops")
    parts.append("nothing else changed" if s.nothing_else else _n(len(s.other), "other change"))

    for c in s.layer_changes:
        if c.ops_a == 0:
            what = f"layer {c.layer} added, {c.ops_b} ops ({c.added})"
        elif c.ops_b == 0:
            what = f"layer {c.layer} removed, {c.ops_a} ops ({c.removed})"
        else:
            last = (
                " (A's last layer)" if s.layers_added and c.layer == min(s.layers_added) - 1 else ""
            )
            delta = "; ".join(
                x
                for x in (f"+{c.added}" if c.added else "", f"−{c.removed}" if c.removed else "")
                if x
            )
            what = f"layer {c.layer}{last} {c.ops_a} → {c.ops_b} ops ({delta})"
        lines.append(f"{c.subgraph}: {what}")
    outside = diff.ops[diff.ops["status"].isin(["added", "removed"])]
    outside = outside[outside["layer_a"].isna() & outside["layer_b"].isna()]
    called = diff.subgraphs[diff.subgraphs["status"].isin(["added", "removed"])]
    top = outside[
        ~outside["subgraph_b"].isin(called["index_b"].dropna())
        & ~outside["subgraph_a"].isin(called["index_a"].dropna())
    ]
    for (sub, status), group in top.groupby(
        [top["subgraph_b"].fillna(top["subgraph_a"]), "status"]
    ):
        name = (b if status == "added" else a).subgraphs[int(sub)].name
        codes = group["opcode_b"] if status == "added" else group["opcode_a"]
        lines.append(f"{name}: {len(group)} ops {status} outside any layer ({_types(list(codes))})")
    for text in s.ops_rewired:
        lines.append(f"rewired: {text}")
    for stems, verb in ((s.subgraphs_added, "added"), (s.subgraphs_removed, "removed")):
        if stems:
            listed = ", ".join(f"{k}×{n}" for k, n in stems.items())
            lines.append(f"{sum(stems.values())} called subgraphs {verb} ({listed})")
    if s.subgraphs_renumbered:
        lines.append(
            f"{s.subgraphs_renumbered} subgraphs renumbered (matched through their callers; "
            "only the name differs)"
        )
    if s.tensors_renamed:
        lines.append(
            f"{s.tensors_renamed} tensors renamed only (the converter's location numbers shift)"
        )
    lines += [f"other: {x}" for x in s.other]
    return "; ".join(parts), lines
