"""Counts and groupings over a TFLite graph: op histogram, parameter bytes, layers, repeated blocks.

Everything here is a pure function of the metadata in `engine.tflite.graph` (no tensor data), linear
in the size of the graph, so it stays fast on decoder graphs with ~10k ops.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import pandas as pd

from engine.tflite.graph import ModelInfo, OpInfo, SubgraphInfo, TensorInfo

# `layer_12/`, `layers.12.`, `blocks/12/`, `transformer/layer_12/`, `block_3`, `blk.3.`, GPT-2's
# `h.3.`: a layer keyword, an optional separator, digits, then a separator or the end. The keyword
# must start the name or follow a separator, so `conv2d_12` or `batch_normalization_3` never match.
_LAYER = re.compile(
    r"(?:^|(?<=[/.;:_\-\s]))"
    r"(?:layers?|blocks?|blk|encoder_layer|decoder_layer|transformer_block|h(?=\.))"
    r"[._/\-]?(\d{1,4})(?=$|[/.;:_\-\s])",
    re.IGNORECASE,
)

# Ops that only move, cast or requantize a tensor: looking through them keeps its meaning.
PASS_THROUGH = frozenset(
    {"RESHAPE", "QUANTIZE", "DEQUANTIZE", "CAST", "SQUEEZE", "EXPAND_DIMS", "IDENTITY"}
)


def layer_of_name(name: str) -> int | None:
    """The layer index a tensor name carries (`transformer/layer_12/...` → 12), or None."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def quantization_kind(tensor: TensorInfo) -> str:
    """ "none", "per-tensor" or "per-channel", from the tensor's quantization scales."""
    q = tensor.quantization
    if q is None or not q.scale:
        return "none"
    return "per-channel" if q.per_channel else "per-tensor"


def _subgraphs(graph: ModelInfo | SubgraphInfo) -> tuple[SubgraphInfo, ...]:
    return graph.subgraphs if isinstance(graph, ModelInfo) else (graph,)


@dataclass(frozen=True)
class GraphIndex:
    """Who produces and who consumes each tensor of one subgraph (built once, O(ops + tensors))."""

    subgraph: SubgraphInfo
    producer: tuple[int, ...]  # tensor → op index, -1 for inputs and constants
    consumers: tuple[tuple[int, ...], ...]  # tensor → op indices reading it, in op order

    @classmethod
    def build(cls, subgraph: SubgraphInfo) -> GraphIndex:
        n = len(subgraph.tensors)
        producer = [-1] * n
        consumers: list[list[int]] = [[] for _ in range(n)]
        for op in subgraph.ops:
            for t in op.outputs:
                if 0 <= t < n:
                    producer[t] = op.index
            for t in op.inputs:
                if 0 <= t < n and (not consumers[t] or consumers[t][-1] != op.index):
                    consumers[t].append(op.index)
        return cls(subgraph, tuple(producer), tuple(tuple(c) for c in consumers))

    def tensor(self, index: int) -> TensorInfo:
        return self.subgraph.tensors[index]

    def op(self, index: int) -> OpInfo:
        return self.subgraph.ops[index]

    def producer_op(self, tensor: int) -> OpInfo | None:
        p = self.producer[tensor] if 0 <= tensor < len(self.producer) else -1
        return self.subgraph.ops[p] if p >= 0 else None

    def constant_source(self, tensor: int) -> TensorInfo | None:
        """The constant behind `tensor`: itself, or the input of the DEQUANTIZE that produced it."""
        if tensor < 0:
            return None
        t = self.subgraph.tensors[tensor]
        if t.is_constant:
            return t
        op = self.producer_op(tensor)
        if op is not None and op.opcode == "DEQUANTIZE" and op.inputs:
            src = self.subgraph.tensors[op.inputs[0]]
            return src if src.is_constant else None
        return None


# ---------------------------------------------------------------------------------------------
# Histograms and parameter bytes
# ---------------------------------------------------------------------------------------------


def op_histogram(graph: ModelInfo | SubgraphInfo, *, per_subgraph: bool = False) -> pd.DataFrame:
    """Op counts by opcode, most frequent first: columns opcode, count, share.

    With `per_subgraph=True` the counts are kept apart: columns subgraph, subgraph_name, opcode,
    count, share (share within its subgraph).
    """
    rows = []
    for sg in _subgraphs(graph):
        for opcode, count in Counter(op.opcode for op in sg.ops).items():
            rows.append(
                {"subgraph": sg.index, "subgraph_name": sg.name, "opcode": opcode, "n": count}
            )
    frame = pd.DataFrame(rows, columns=["subgraph", "subgraph_name", "opcode", "n"])
    if per_subgraph:
        totals = frame.groupby("subgraph")["n"].transform("sum")
        out = frame.rename(columns={"n": "count"}).assign(share=frame["n"] / totals)
        return out.sort_values(["subgraph", "count", "opcode"], ascending=[True, False, True])[
            ["subgraph", "subgraph_name", "opcode", "count", "share"]
        ].reset_index(drop=True)
    overall = frame.groupby("opcode", as_index=False)["n"].sum().rename(columns={"n": "count"})
    overall["share"] = overall["count"] / max(int(overall["count"].sum()), 1)
    return overall.sort_values(["count", "opcode"], ascending=[False, True]).reset_index(drop=True)


_PARAM_COLUMNS = [
    "subgraph",
    "tensor",
    "name",
    "buffer",
    "dtype",
    "quantization",
    "shape",
    "params",
    "bytes",
    "layer",
]


def parameter_table(graph: ModelInfo | SubgraphInfo) -> pd.DataFrame:
    """One row per constant buffer (tensors with `buffer_bytes > 0`), each shared buffer once.

    A buffer read by several tensors (tied weights, or the same weight in several subgraphs) is
    listed under the first tensor that names it, so sums over this table are the file's real
    parameter bytes.
    """
    seen: set[int] = set()
    rows = []
    for sg in _subgraphs(graph):
        for t in sg.tensors:
            if not t.is_constant or t.buffer in seen:
                continue
            seen.add(t.buffer)
            rows.append(
                {
                    "subgraph": sg.index,
                    "tensor": t.index,
                    "name": t.name,
                    "buffer": t.buffer,
                    "dtype": t.dtype,
                    "quantization": quantization_kind(t),
                    "shape": t.shape,
                    "params": t.numel,
                    "bytes": t.buffer_bytes,
                    "layer": layer_of_name(t.name),
                }
            )
    return pd.DataFrame(rows, columns=_PARAM_COLUMNS)


def parameter_bytes(graph: ModelInfo | SubgraphInfo, by: str | list[str] = "dtype") -> pd.DataFrame:
    """Constant bytes grouped by "dtype", "quantization" (none / per-tensor / per-channel), "layer"
    or a list of them: columns <by...>, tensors, params, bytes, share; largest first."""
    keys = [by] if isinstance(by, str) else list(by)
    table = parameter_table(graph)
    if "layer" in keys:
        table = table.assign(layer=table["layer"].astype("Int64"))
    grouped = (
        table.groupby(keys, as_index=False, dropna=False)
        .agg(tensors=("tensor", "size"), params=("params", "sum"), bytes=("bytes", "sum"))
        .sort_values("bytes", ascending=False)
        .reset_index(drop=True)
    )
    grouped["share"] = grouped["bytes"] / max(int(grouped["bytes"].sum()), 1)
    return grouped


# ---------------------------------------------------------------------------------------------
# Layers from tensor names
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerGroups:
    """Each op's and tensor's layer (None outside any layer), from the names in the graph."""

    op_layer: tuple[int | None, ...]
    tensor_layer: tuple[int | None, ...]

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({x for x in self.op_layer if x is not None}))

    def ops_in(self, layer: int) -> tuple[int, ...]:
        return tuple(i for i, x in enumerate(self.op_layer) if x == layer)


def layer_groups(subgraph: SubgraphInfo, index: GraphIndex | None = None) -> LayerGroups:
    """Assign ops to layers by the names of their outputs (then of their constant inputs).

    A tensor belongs to the layer its own name carries; an unnamed activation to its producer's
    layer; an unnamed constant to the one layer whose ops read it (none when several do).
    """
    gi = index or GraphIndex.build(subgraph)
    name_layer = [layer_of_name(t.name) for t in subgraph.tensors]
    op_layer: list[int | None] = []
    for op in subgraph.ops:
        layer = next(
            (name_layer[t] for t in op.outputs if t >= 0 and name_layer[t] is not None), None
        )
        if layer is None:
            layer = next(
                (
                    name_layer[t]
                    for t in op.inputs
                    if t >= 0 and subgraph.tensors[t].is_constant and name_layer[t] is not None
                ),
                None,
            )
        op_layer.append(layer)
    tensor_layer: list[int | None] = []
    for t in subgraph.tensors:
        layer = name_layer[t.index]
        if layer is None:
            p = gi.producer[t.index]
            if p >= 0:
                layer = op_layer[p]
            else:
                readers = {op_layer[c] for c in gi.consumers[t.index]}
                layer = readers.pop() if len(readers) == 1 else None
        tensor_layer.append(layer)
    return LayerGroups(tuple(op_layer), tuple(tensor_layer))


def _op_types(ops: list[OpInfo]) -> str:
    return ", ".join(f"{code}×{n}" for code, n in Counter(op.opcode for op in ops).most_common())


def layer_table(subgraph: SubgraphInfo, groups: LayerGroups | None = None) -> pd.DataFrame:
    """One row per layer: layer, ops, op_types ("FULLY_CONNECTED×4, ADD×2"), params, param_bytes,
    first_op, last_op. A constant buffer counts once per layer whose ops read it."""
    groups = groups or layer_groups(subgraph)
    by_layer: dict[int, list[OpInfo]] = defaultdict(list)
    for op, layer in zip(subgraph.ops, groups.op_layer, strict=True):
        if layer is not None:
            by_layer[layer].append(op)
    rows = []
    for layer in sorted(by_layer):
        ops = by_layer[layer]
        consts: dict[int, TensorInfo] = {}
        for op in ops:
            for t in op.inputs:
                if t >= 0 and subgraph.tensors[t].is_constant:
                    consts.setdefault(subgraph.tensors[t].buffer, subgraph.tensors[t])
        rows.append(
            {
                "layer": layer,
                "ops": len(ops),
                "op_types": _op_types(ops),
                "params": sum(t.numel for t in consts.values()),
                "param_bytes": sum(t.buffer_bytes for t in consts.values()),
                "first_op": ops[0].index,
                "last_op": ops[-1].index,
            }
        )
    columns = ["layer", "ops", "op_types", "params", "param_bytes", "first_op", "last_op"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------
# Repeated blocks
# ---------------------------------------------------------------------------------------------


def _op_token(subgraph: SubgraphInfo, op: OpInfo) -> str:
    shapes = [
        "x".join(map(str, subgraph.tensors[t].shape))
        for t in op.inputs
        if t >= 0 and subgraph.tensors[t].is_constant
    ]
    return f"{op.opcode}[{' '.join(shapes)}]" if shapes else op.opcode


@dataclass(frozen=True)
class BlockGroup:
    group: int  # 0 = the signature most layers share
    layers: tuple[int, ...]
    ops_per_layer: int
    signature: str  # short hash of (opcode + constant shapes) in op order


@dataclass(frozen=True)
class RepeatedBlocks:
    """Layers grouped by identical signatures, and how each other group differs from group 0."""

    groups: tuple[BlockGroup, ...]
    layers: pd.DataFrame  # layer, group, ops, signature
    differences: pd.DataFrame  # group, layer, reference_layer, position, op, this, reference

    @property
    def uniform(self) -> bool:
        return len(self.groups) <= 1


def repeated_blocks(subgraph: SubgraphInfo, groups: LayerGroups | None = None) -> RepeatedBlocks:
    """Group layers whose op sequence (opcode + constant-tensor shapes, in order) is identical.

    Differences compare the first layer of each minority group with the first layer of group 0,
    op by op (a `difflib` alignment, so an inserted op shows as one row, not a shifted tail).
    """
    groups = groups or layer_groups(subgraph)
    tokens: dict[int, list[str]] = defaultdict(list)
    op_ids: dict[int, list[int]] = defaultdict(list)
    for op, layer in zip(subgraph.ops, groups.op_layer, strict=True):
        if layer is not None:
            tokens[layer].append(_op_token(subgraph, op))
            op_ids[layer].append(op.index)
    by_sig: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for layer in sorted(tokens):
        by_sig[tuple(tokens[layer])].append(layer)
    ordered = sorted(by_sig.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    block_groups = []
    layer_rows = []
    for gid, (sig, layers) in enumerate(ordered):
        digest = hashlib.sha1("\n".join(sig).encode(), usedforsecurity=False).hexdigest()[:10]
        block_groups.append(BlockGroup(gid, tuple(layers), len(sig), digest))
        layer_rows += [
            {"layer": x, "group": gid, "ops": len(sig), "signature": digest} for x in layers
        ]
    diff_rows = []
    if len(ordered) > 1:
        ref_sig, ref_layers = ordered[0]
        ref_layer = ref_layers[0]
        for gid, (sig, layers) in enumerate(ordered[1:], start=1):
            layer = layers[0]
            matcher = difflib.SequenceMatcher(None, sig, ref_sig, autojunk=False)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes():
                if tag == "equal":
                    continue
                for k in range(max(i2 - i1, j2 - j1)):
                    i, j = i1 + k, j1 + k
                    diff_rows.append(
                        {
                            "group": gid,
                            "layer": layer,
                            "reference_layer": ref_layer,
                            "position": i if i < i2 else None,
                            "op": op_ids[layer][i] if i < i2 else None,
                            "this": sig[i] if i < i2 else "",
                            "reference": ref_sig[j] if j < j2 else "",
                        }
                    )
    layers_frame = pd.DataFrame(layer_rows, columns=["layer", "group", "ops", "signature"])
    diff_columns = ["group", "layer", "reference_layer", "position", "op", "this", "reference"]
    return RepeatedBlocks(
        tuple(block_groups),
        layers_frame.sort_values("layer").reset_index(drop=True),
        pd.DataFrame(diff_rows, columns=diff_columns),
    )
