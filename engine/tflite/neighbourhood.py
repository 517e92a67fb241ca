"""Small pieces of a TFLite graph to draw: the neighbourhood of an op or tensor, or one layer.

The graph is bipartite (ops ↔ tensors) and a hop is one edge of it: from an op, 1 hop reaches
its inputs and outputs and 2 hops the ops on the other side of them; from a tensor, 1 hop
reaches its producer and consumers. `to_dot` renders the result for `st.graphviz_chart`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.tflite.analysis import GraphIndex, LayerGroups, layer_groups
from engine.tflite.graph import SubgraphInfo, TensorInfo

Direction = Literal["both", "up", "down"]


@dataclass(frozen=True)
class Node:
    id: str  # "op:12" or "t:45"
    kind: Literal["op", "tensor"]
    index: int
    label: str
    distance: int  # hops from the center (0 for every node of a layer graph)
    constant: bool = False
    center: bool = False


@dataclass(frozen=True)
class Neighbourhood:
    subgraph: int
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]  # data flow: tensor → op it feeds, op → tensor it makes
    center: str | None
    truncated: bool
    note: str  # why and where it was cut, empty when complete

    @property
    def ops(self) -> tuple[int, ...]:
        return tuple(n.index for n in self.nodes if n.kind == "op")

    @property
    def tensors(self) -> tuple[int, ...]:
        return tuple(n.index for n in self.nodes if n.kind == "tensor")


def short_name(name: str, limit: int = 40) -> str:
    """The first of a fused name's `;`-joined parts, cut from the left (the tail says most)."""
    first = name.split(";", 1)[0] or "(unnamed)"
    return first if len(first) <= limit else "…" + first[-(limit - 1) :]


def _tensor_label(t: TensorInfo) -> str:
    return f"{short_name(t.name)}\n[{', '.join(map(str, t.shape))}] {t.dtype}"


def _node(sg: SubgraphInfo, key: tuple[str, int], distance: int, center: bool) -> Node:
    kind, index = key
    if kind == "op":
        return Node(
            f"op:{index}", "op", index, f"{sg.ops[index].opcode} #{index}", distance, False, center
        )
    t = sg.tensors[index]
    return Node(f"t:{index}", "tensor", index, _tensor_label(t), distance, t.is_constant, center)


def _edges(sg: SubgraphInfo, keys: set[tuple[str, int]]) -> tuple[tuple[str, str], ...]:
    edges = []
    for kind, index in sorted(keys):
        if kind != "op":
            continue
        op = sg.ops[index]
        edges += [(f"t:{t}", f"op:{index}") for t in op.inputs if ("t", t) in keys]
        edges += [(f"op:{index}", f"t:{t}") for t in op.outputs if ("t", t) in keys]
    return tuple(edges)


def neighbourhood(
    subgraph: SubgraphInfo,
    *,
    op: int | None = None,
    tensor: int | None = None,
    hops: int = 2,
    max_nodes: int = 200,
    direction: Direction = "both",
) -> Neighbourhood:
    """Ops and tensors within `hops` edges of one op or tensor ("up": producers only, "down":
    consumers only), breadth first; stops at `max_nodes` and says so in `note`."""
    if (op is None) == (tensor is None):
        raise ValueError("give exactly one of op= or tensor=")
    if op is not None and not 0 <= op < len(subgraph.ops):
        raise ValueError(f"op {op} is not in subgraph {subgraph.index} ({len(subgraph.ops)} ops)")
    if tensor is not None and not 0 <= tensor < len(subgraph.tensors):
        raise ValueError(
            f"tensor {tensor} is not in subgraph {subgraph.index} ({len(subgraph.tensors)} tensors)"
        )
    gi = GraphIndex.build(subgraph)
    start = ("op", op) if op is not None else ("t", tensor)
    up, down = direction in ("both", "up"), direction in ("both", "down")

    def neighbours(key: tuple[str, int]) -> list[tuple[str, int]]:
        kind, index = key
        out: list[tuple[str, int]] = []
        if kind == "op":
            o = subgraph.ops[index]
            out += [("t", t) for t in o.inputs if t >= 0] if up else []
            out += [("t", t) for t in o.outputs if t >= 0] if down else []
        else:
            p = gi.producer[index]
            out += [("op", p)] if up and p >= 0 else []
            out += [("op", c) for c in gi.consumers[index]] if down else []
        return out

    distance = {start: 0}
    frontier = [start]
    truncated, note = False, ""
    for d in range(1, hops + 1):
        nxt = []
        for key in frontier:
            for n in neighbours(key):
                if n in distance:
                    continue
                if len(distance) >= max_nodes:
                    truncated = True
                    note = (
                        f"Stopped at {max_nodes} nodes while adding those {d} hops away; "
                        "raise max_nodes or lower hops to see the rest."
                    )
                    break
                distance[n] = d
                nxt.append(n)
            if truncated:
                break
        if truncated or not nxt:
            break
        frontier = nxt
    nodes = tuple(
        _node(subgraph, key, dist, key == start)
        for key, dist in sorted(distance.items(), key=lambda kv: (kv[1], kv[0]))
    )
    center = nodes[0].id
    return Neighbourhood(
        subgraph.index, nodes, _edges(subgraph, set(distance)), center, truncated, note
    )


def layer_graph(
    subgraph: SubgraphInfo,
    layer: int,
    *,
    groups: LayerGroups | None = None,
    max_nodes: int = 400,
) -> Neighbourhood:
    """Every op of one layer group (see `analysis.layer_groups`) with its input and output
    tensors, in op order; stops at `max_nodes` and says so in `note`."""
    groups = groups or layer_groups(subgraph)
    ops = groups.ops_in(layer)
    if not ops:
        raise ValueError(f"no ops of layer {layer} in subgraph {subgraph.index}")
    keys: dict[tuple[str, int], None] = {}
    truncated, note = False, ""
    for index in ops:
        o = subgraph.ops[index]
        wanted = [("op", index)] + [("t", t) for t in (*o.inputs, *o.outputs) if t >= 0]
        new = [k for k in wanted if k not in keys]
        if len(keys) + len(new) > max_nodes:
            truncated = True
            shown = sum(1 for k in keys if k[0] == "op")
            note = (
                f"Showing the first {shown} of {len(ops)} ops of layer {layer} ({max_nodes} nodes)."
            )
            break
        keys.update(dict.fromkeys(new))
    nodes = tuple(_node(subgraph, key, 0, False) for key in keys)
    return Neighbourhood(subgraph.index, nodes, _edges(subgraph, set(keys)), None, truncated, note)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Neighbourhood, *, rankdir: str = "TB") -> str:
    """Graphviz DOT text: ops as boxes (opcode #index), tensors as ellipses (name, shape, dtype),
    constants dashed and grey, the center highlighted; a truncation note as the graph label."""
    lines = [
        "digraph G {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [color="#777777", arrowsize=0.6];',
    ]
    if graph.note:
        lines.append(f"  label={_quote(graph.note)}; labelloc=t; fontsize=10;")
    for n in graph.nodes:
        attrs = {"label": _quote(n.label)}
        if n.kind == "op":
            attrs |= {"shape": "box", "style": '"rounded,filled"', "fillcolor": '"#dbe8f6"'}
        elif n.constant:
            attrs |= {"shape": "ellipse", "style": '"dashed,filled"', "fillcolor": '"#f2f2f2"'}
            attrs["fontcolor"] = '"#555555"'
        else:
            attrs |= {"shape": "ellipse", "style": "filled", "fillcolor": '"#ffffff"'}
        if n.center:
            attrs |= {"penwidth": "3", "color": '"#d62728"', "fillcolor": '"#ffe08a"'}
        body = ", ".join(f"{k}={v}" for k, v in attrs.items())
        lines.append(f"  {_quote(n.id)} [{body}];")
    lines += [f"  {_quote(a)} -> {_quote(b)};" for a, b in graph.edges]
    lines.append("}")
    return "\n".join(lines)
