"""`recover_config`: a decoder's Hugging Face config read back from its TFLite graph.

The reading starts from one signature (the one with the logits output, `decode` for Google's
converter, so that no layer is dead code): its `kv_cache_k_<i>` inputs give the layers and the
attention blocks (`findings.kv_attention`), the existing detectors give the FFN widths, AltUp,
LAuReL, per-layer embeddings and the tied head. Two fields read small constants when a `values`
reader is given: the sliding-window width and the RoPE inverse frequencies.
"""

from __future__ import annotations

import numpy as np

from engine.tflite.findings.base import Ctx, Digest, contexts, sorted_ids
from engine.tflite.findings.ffn_widths import find_mlps
from engine.tflite.findings.kv_attention import (
    SDPA,
    kv_attention,
    kv_inputs,
    layer_after,
    mask_input,
)
from engine.tflite.graph import ModelInfo, SignatureInfo
from engine.tflite.recovered.base import Values
from engine.tflite.recovered.config import FIELDS, Recovered, RecoveredConfig
from engine.tflite.recovered.detected import DetectedFields
from engine.tflite.recovered.head import LOGITS, HeadFields
from engine.tflite.recovered.rope import RopeFields

_SLIDING, _FULL = "sliding_attention", "full_attention"


def pick_signature(model: ModelInfo) -> SignatureInfo | None:
    """The signature to read: one with KV-cache inputs, `decode` first, then one with an output
    other than the caches (the logits), then the first."""
    with_kv = [s for s in model.signatures if kv_inputs(s)]
    if not with_kv:
        return None

    def rank(s: SignatureInfo) -> tuple[int, int]:
        logits = any(LOGITS.search(name) for name in s.outputs)
        return (0 if "decode" in s.key.lower() else 1, 0 if logits else 1)

    return min(with_kv, key=rank)


def recover_config(
    model: ModelInfo,
    *,
    digest: Digest | None = None,
    values: Values | None = None,
    subgraph: int | None = None,
    ctxs: list[Ctx] | None = None,
) -> RecoveredConfig:
    """Every field of `FIELDS` with its evidence, read from `subgraph` (default: the signature
    `pick_signature` chooses). `digest` lets an untied head be told from a tied one stored twice;
    `values` reads the window and RoPE constants; without them those fields are unknown."""
    ctxs = ctxs or contexts(model)
    sig = pick_signature(model) if subgraph is None else None
    if subgraph is None:
        subgraph = sig.subgraph if sig is not None else 0
    sig = sig or next((s for s in model.signatures if s.subgraph == subgraph), None)
    if not ctxs:
        return RecoveredConfig(
            subgraph, None, {f: Recovered.unknown("no subgraph") for f in FIELDS}
        )
    ctx = ctxs[subgraph]
    r = _Reader(model, ctx, sig, kv_attention(model, ctx), digest, values)
    return RecoveredConfig(subgraph, sig.key if sig else None, r.read())


class _Reader(HeadFields, RopeFields, DetectedFields):
    """Attention, FFN widths and local/global layers here; the rest in the mixed-in readers."""

    def read(self) -> dict[str, Recovered]:
        self._attention()
        self._widths()
        self._head()
        self._layer_types()
        self._rope()
        self._detected()
        return {f: self.out.get(f, Recovered.unknown("not read")) for f in FIELDS}

    # -- attention: layers, heads, KV heads, head dim, hidden size -----------------------------

    def _attention(self) -> None:
        attn = ("num_hidden_layers", "num_key_value_heads", "head_dim", "num_attention_heads")
        if not self.blocks:
            self._unknown(
                (*attn, "hidden_size"),
                f"no kv_cache_k_<i> input read by an attention in {self.where}",
            )
            return
        b = self.blocks
        k_in = [a.k_input for a in b]
        written = [a.k_write for a in self.caches if a.k_write is not None]
        attentions = sum(
            o.opcode == "SOFTMAX" or o.options.get("name") == SDPA for o in self.ctx.sg.ops
        )
        if len(written) == len(self.caches) and attentions <= len(self.caches):
            self._set(
                "num_hidden_layers",
                len(self.caches),
                written,
                [a.k_input for a in self.caches],
                f"one kv_cache_k_<i> input per layer in {self.where}, each written by the graph",
            )
        else:
            self._unknown(
                ("num_hidden_layers",),
                f"{len(self.caches)} KV caches, {len(written)} written, {attentions} attentions "
                "(layers sharing a cache?)",
            )
        for name, key, what in (
            ("num_key_value_heads", "kv_heads", "heads axis (1)"),
            ("head_dim", "head_dim", "contracted axis"),
        ):
            found = {getattr(a, key) for a in b}
            if len(found) == 1 and None not in found:
                self._set(
                    name,
                    found.pop(),
                    [a.scores for a in b],
                    k_in,
                    f"the K caches' {what} at the QK BATCH_MATMUL of every layer",
                )
            else:
                self._unknown((name,), f"the K caches disagree: {sorted(map(str, found))}")
        head_dim = self.out["head_dim"].value
        qs = [a.q_proj for a in b]
        if any(q is None for q in qs) or head_dim is None:
            self._unknown(("num_attention_heads", "hidden_size"), "no query projection found")
            return
        outs, ins = {q.d_out for q in qs}, {q.d_in for q in qs}
        ops, weights = [q.op for q in qs], [q.weight for q in qs]
        if len(outs) == 1 and next(iter(outs)) % head_dim == 0:
            self._set(
                "num_attention_heads",
                next(iter(outs)) // head_dim,
                ops,
                weights,
                "query projection width / head_dim (the constant matmul upstream of each "
                "layer's QK scores)",
            )
        else:
            self._unknown(("num_attention_heads",), f"query widths {sorted(outs)}")
        if len(ins) == 1:
            self._set(
                "hidden_size",
                ins.pop(),
                ops,
                weights,
                "input width of every layer's query projection",
            )
        else:
            self._unknown(("hidden_size",), f"query projections read widths {sorted(ins)}")

    # -- FFN widths per layer ------------------------------------------------------------------

    def _widths(self) -> None:
        mlps = find_mlps(self.ctx)
        if not mlps:
            self._unknown(("intermediate_size",), f"no up→down MLP found in {self.where}")
            return
        if self.blocks:
            per_layer: dict[int, list[int]] = {}
            for m in mlps:
                layer = layer_after(self.blocks, m.down.op)
                if layer is not None:
                    per_layer.setdefault(layer, []).append(m.width)
            if sorted(per_layer) != list(range(len(self.caches))):
                self._unknown(
                    ("intermediate_size",),
                    f"MLPs found after {len(per_layer)} of {len(self.caches)} layers' attention "
                    f"in {self.where} (a signature without logits drops the last layers' MLPs)",
                )
                return
            widths = [max(per_layer[i]) for i in range(len(self.caches))]
            how = "hidden width of the up→down MLP after each layer's attention"
        else:
            widths = [m.width for m in mlps]
            how = "hidden width of each up→down MLP, in the order they run (no KV caches)"
        ops = [op for m in mlps for op in m.ops]
        self._set("intermediate_size", widths, ops, [m.down.weight for m in mlps], how)

    # -- local / global layers and the window --------------------------------------------------

    def _layer_types(self) -> None:
        names = ("layer_types", "sliding_window")
        mask = mask_input(self.sig) if self.sig else None
        if not self.blocks or mask is None:
            self._unknown(names, f"no mask input or no attention found in {self.where}")
            return
        types = []
        for a in self.blocks:
            if a.mask_root == mask:
                types.append(_FULL)
            elif a.band_ops:
                types.append(_SLIDING)
            else:
                self._unknown(names, f"layer {a.layer}: the mask is neither the input nor a band")
                return
        ops = [op for a in self.blocks for op in (a.mask_add, *a.band_ops)]
        roots = [mask] + [a.mask_root for a in self.blocks if a.mask_root is not None]
        self._set(
            "layer_types",
            types,
            ops,
            roots,
            "full: the scores get the mask input unchanged; sliding: they get the mask input "
            "cut to a band of positions (GREATER/LESS against the position)",
        )
        sliding = [a for a in self.blocks if a.band_ops]
        if not sliding:
            self.out["sliding_window"] = Recovered.absent(
                "every layer reads the mask input unchanged: the graph builds no window",
                sorted_ids(a.mask_add for a in self.blocks),
                (mask,),
            )
            return
        consts = {a.window_const for a in sliding}
        if None in consts or len(consts) != 1:
            self._unknown(("sliding_window",), "no single constant shifts the band's position")
            return
        const = consts.pop()
        if self.values is None:
            self._unknown(("sliding_window",), "the window constant was not read (no reader)")
            return
        v = np.asarray(self.values(self.ctx.sg.index, const)).ravel()
        band_ops = [op for a in sliding for op in a.band_ops]
        self._set(
            "sliding_window",
            int(v[0]),
            band_ops,
            [const],
            "the constant subtracted from the position before the band's comparison",
        )
