"""The vocabulary and the tied head: the matmul the logits output is made from, and whether it
holds the token embedding's values (one buffer, equal bytes, or a scaled copy)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from engine.tflite.analysis import PASS_THROUGH
from engine.tflite.findings import tied_embedding
from engine.tflite.findings.base import gathers
from engine.tflite.recovered.base import FieldReader

LOGITS = re.compile(r"logits", re.IGNORECASE)
_MAX_COMPARED = 1 << 26  # elements of an LM head whose values are compared with the embedding
# Gemma's final soft-capping (tanh(x / c) * c) may sit between the head and the logits output
_SOFTCAP = PASS_THROUGH | {"MUL", "DIV", "TANH"}


class HeadFields(FieldReader):
    """vocab_size and tie_word_embeddings."""

    def _head(self) -> None:
        sg = self.ctx.sg
        logits = [t for n, t in (self.sig.outputs.items() if self.sig else ()) if LOGITS.search(n)]
        head = None
        if logits:
            for t in sorted(self.ctx.backward(logits[0], _SOFTCAP, 4), reverse=True):
                head = self.ctx.by_op.get(self.ctx.gi.producer[t])
                if head is not None:
                    break
        if head is None:
            self._unknown(
                ("vocab_size", "tie_word_embeddings"),
                f"no logits output made by a constant matmul in {self.where}",
            )
            return
        self._set(
            "vocab_size",
            head.d_out,
            [head.op],
            [head.weight, logits[0]],
            "output width of the LM head (the matmul the logits output is made from)",
        )
        table = self._token_table()
        if table is None:
            self._unknown(("tie_word_embeddings",), "no token-embedding lookup found")
            return
        op, t = table
        w = sg.tensors[head.weight]
        ops, tensors = [head.op, op], [w.index, t.index]
        tied = [
            f
            for f in tied_embedding.detect(self.model, [self.ctx], None)
            if f.data["head"]["op"] == head.op and f.data["embedding"]["tensor"] == t.index
        ]
        if tied:
            self._set(
                "tie_word_embeddings", True, ops, tensors, "LM head and embedding share a buffer"
            )
        elif w.shape != t.shape:
            self._set(
                "tie_word_embeddings",
                False,
                ops,
                tensors,
                f"LM head {list(w.shape)} and embedding {list(t.shape)} differ in shape",
            )
        else:
            self._tied_by_content(ops, tensors, w.index, t.index)

    def _tied_by_content(self, ops: list[int], tensors: list[int], head: int, table: int) -> None:
        """Separate buffers: tied when the bytes are equal, or when the head is the table times
        one constant (the converter folds Gemma's final soft-capping 1/c into the head)."""
        i = self.ctx.sg.index
        if self.digest is not None and self.digest(self.model, i, head) == self.digest(
            self.model, i, table
        ):
            self._set("tie_word_embeddings", True, ops, tensors, "bytes identical, two buffers")
            return
        if self.values is None or self.ctx.sg.tensors[head].numel > _MAX_COMPARED:
            self._unknown(
                ("tie_word_embeddings",),
                "LM head and embedding are separate buffers; their values were not compared"
                + ("" if self.values is None else " (too large to compare in memory)"),
            )
            return
        # every 8th row: enough to tell a copy from another matrix, and a bounded read
        h = np.asarray(self.values(i, head))[::8].astype(np.float64)
        e = np.asarray(self.values(i, table))[::8].astype(np.float64)
        scale = float((h * e).sum() / max(float((e * e).sum()), 1e-300))
        tensors_of = self.ctx.sg.tensors
        if any(tensors_of[x].dtype not in ("float32", "float16") for x in (head, table)):
            # copies quantized apart differ by their rounding: compare their direction
            norm = float(np.sqrt((h * h).sum() * (e * e).sum())) or 1.0
            tied = float((h * e).sum()) / norm > 0.999
            within = " within quantization"
        else:
            tied = bool(np.allclose(h, scale * e, rtol=1e-4, atol=1e-6 * abs(scale)))
            within = ""
        how = (
            f"LM head = embedding × {scale:.6g}{within} (a constant folded into a copy)"
            if tied and scale != 0
            else "LM head and embedding hold different values (not a scaled copy)"
        )
        tied = tied and scale != 0
        self._set("tie_word_embeddings", tied, ops, tensors, how)

    def _token_table(self) -> tuple[int, Any] | None:
        """The lookup that reads the token ids input (through reshapes only)."""
        tokens = [t for n, t in (self.sig.inputs.items() if self.sig else ()) if "token" in n]
        if not tokens:
            return None
        for op, table in gathers(self.ctx):
            o = self.ctx.sg.ops[op]
            ids = o.inputs[1] if o.opcode == "GATHER" else o.inputs[0]
            if tokens[0] in self.ctx.backward(ids, PASS_THROUGH, 4):
                return op, table
        return None
