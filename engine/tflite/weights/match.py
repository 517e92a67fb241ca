"""Map each TFLite constant to the HF parameter it came from, and measure the difference.

Rules, in order (docs/architecture.md, "Weights back to their source"):
1. Constants are grouped by buffer: prefill and decode share one buffer per weight, so each
   buffer is compared once and every tensor on it gets the result.
2. Integer constants without quantization (shapes, indices, positions) and booleans (masks) are
   not weights: listed as unmatched with that reason, never compared.
3. Candidates: the HF modules the tensor's name points at (`names.py`) first, then, for a tensor
   of at least MIN_CONTENT values that are not all 0, every HF parameter with as many values.
   Each is tried in the layouts that fit its shape (as stored, transposed, reshaped; `1 + w` for a
   Gemma RMSNorm weight), screened on SAMPLE spread-out values, and compared whole only if the
   screen passes; when it fails, a constant the converter folded in is looked for (`_scaling`).
4. Every candidate within step is kept (identical values, e.g. norms at their init, share one
   stored copy); the rule is "name" when the first one is named, else "content".
5. A lone named candidate that never agrees is still reported, with its |Δ| and within_step
   False ("name (values differ)"); anything else unmatched is listed with a reason.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from engine.tflite.bundles import TFLiteFile, open_file
from engine.tflite.graph import TensorInfo
from engine.tflite.reader import TFLiteReader
from engine.tflite.weights.compare import (
    Difference,
    Quant,
    Transform,
    at,
    difference,
    quant_kind,
    quant_of,
    sample_close,
    within_step,
)
from engine.tflite.weights.hf import HFWeights
from engine.tflite.weights.names import named_candidates
from engine.tflite.weights.result import UnmatchedParam, UnmatchedTensor, WeightMatch, WeightRow

MIN_CONTENT = 16  # fewer values than this could agree by chance
SAMPLE = 64


def _layouts(
    stored: tuple[int, ...], source: tuple[int, ...], norm_offset: bool
) -> list[tuple[str, Transform]]:
    """Ways an HF array of shape `source` can be laid out as the stored shape."""
    out: list[tuple[str, Transform]] = []
    if source == stored:
        out.append(("as stored", lambda a: a))
    if len(stored) == 2 and source == stored[::-1]:
        out.append(("transposed", lambda a: a.T))
    if not out and [d for d in source if d != 1] == [d for d in stored if d != 1]:
        out.append(("reshaped", lambda a: a.reshape(stored)))
    if out and norm_offset:
        plain = out[0][1]
        # Gemma's RMSNorm multiplies by (1 + w); the converter stores 1 + w
        out.append(("1 + w", lambda a: plain(a.astype(np.float32) + np.float32(1))))
    return out


def _sample(numel: int) -> np.ndarray:
    return np.unique(np.linspace(0, max(numel - 1, 0), min(numel, SAMPLE)).astype(np.int64))


class _Matcher:
    def __init__(self, hf: HFWeights, gemma: bool) -> None:
        self.hf = hf
        self.gemma = gemma
        self.by_numel: dict[int, list[str]] = defaultdict(list)
        for name, p in hf.params.items():
            self.by_numel[p.numel].append(name)

    def _tries(self, t: TensorInfo, param: str) -> list[tuple[str, Transform]]:
        module = param.split(".")[:-1]
        offset = self.gemma and bool(module) and "norm" in module[-1]
        return _layouts(t.shape, self.hf.params[param].shape, offset)

    def agreeing(
        self, raw: np.ndarray, t: TensorInfo, params: list[str], scaled: bool = False
    ) -> list[tuple[str, str, Difference]]:
        """Every candidate whose values the tensor holds, in one of its layouts (times a folded
        constant when `scaled`). Each is screened on a few values first; only a survivor is
        compared whole."""
        q = quant_of(t)
        positions = _sample(t.numel)
        found = []
        for param in params:
            for label, layout in self._tries(t, param):
                hf = layout(self.hf.array(param))
                sample = at(hf, positions)
                if scaled:
                    factor = _scaling(raw, q, sample, positions)
                    if factor is None:
                        continue
                    how, value, divide = factor
                    hf = hf / np.float32(value) if divide else hf * np.float32(value)
                    label = how if label == "as stored" else f"{label}, {how}"
                elif not sample_close(raw, q, sample, positions):
                    continue
                d = difference(raw, q, hf)
                if within_step(d, q is not None):
                    found.append((param, label, d))
                    break
        return found

    def match(
        self, raw: np.ndarray, t: TensorInfo, names: list[str]
    ) -> tuple[str, list[tuple[str, str, Difference]]]:
        """(rule, agreeing candidates): named ones first, then any with as many values."""
        named = [p for p in names if self._tries(t, p)]
        others = []
        if t.numel >= MIN_CONTENT and np.any(raw):
            others = [p for p in self.by_numel.get(t.numel, []) if p not in named]
        found = self.agreeing(raw, t, named + others)
        if not found and t.numel >= MIN_CONTENT:
            found = self.agreeing(raw, t, named + others, scaled=True)
        if found:
            return ("name" if found[0][0] in named else "content"), found
        if len(named) == 1:
            label, layout = self._tries(t, named[0])[0]
            d = difference(raw, quant_of(t), layout(self.hf.array(named[0])))
            return "name (values differ)", [(named[0], label, d)]
        return "", []


def _scaling(
    raw: np.ndarray, q: Quant | None, sample: np.ndarray, positions: np.ndarray
) -> tuple[str, float, bool] | None:
    """A constant the converter folded into the weight (an embedding scale sqrt(d), a router's
    1/d, a logit soft cap's 1/30): the ratio on the sample, snapped to the nearest simple number
    (k, 2^k, sqrt(k), 1/k, 1/sqrt(k)) that makes the sample agree, as a float32 × or ÷."""
    stored = raw.reshape(-1)[positions].astype(np.float64)
    if q is not None:
        scale = (
            q.scale if q.axis is None else q.scale[np.unravel_index(positions, raw.shape)[q.axis]]
        )
        zero = q.zero if q.axis is None else q.zero[np.unravel_index(positions, raw.shape)[q.axis]]
        stored = (stored - zero) * scale
    source = sample.astype(np.float64)
    keep = (source != 0) & (stored != 0)
    if keep.sum() < 4:
        return None
    ratios = stored[keep] / source[keep]
    c = float(np.median(ratios))
    if not np.isfinite(c) or c == 0 or abs(c - 1) < 1e-6:
        return None
    spread = 1e-6 if q is None else 0.5 * float(q.scale.max()) / float(np.abs(stored).max())
    if np.quantile(np.abs(ratios / c - 1), 0.5) > max(spread, 1e-6):
        return None  # not one constant factor
    sign = float(np.sign(c))
    tries = [
        (f"× {v:g}", v, False)
        for v in (float(round(c)), sign * 2.0 ** round(np.log2(abs(c))), sign * round(c * c) ** 0.5)
    ]
    tries += [(f"÷ {v:g}", v, True) for v in (float(round(1 / c)), sign * round(1 / c**2) ** 0.5)]
    tries.append((f"× {c:.6g}", c, False))
    for how, value, divide in tries:
        if not value or abs((1 / value if divide else value) - c) > 1e-3 * abs(c):
            continue
        f = np.float32(value)
        scaled = sample.astype(np.float32) / f if divide else sample.astype(np.float32) * f
        if sample_close(raw, q, scaled, positions):
            return how, value, divide
    return None


def _not_a_weight(t: TensorInfo) -> str | None:
    if t.dtype == "bool":
        return "boolean constant (a mask)"
    if t.dtype in ("string", "resource", "variant"):
        return f"{t.dtype} constant"
    if not t.dtype.startswith(("float", "bfloat")) and quant_of(t) is None:
        return "integer constant (shapes, indices, positions)"
    return None


def _no_source(t: TensorInfo, values: np.ndarray) -> str:
    lowered = t.name.lower()
    if "rotary" in lowered or "rope" in lowered:
        return "rope table (computed from the config, not a parameter)"
    if "mask" in lowered:
        return "mask"
    if t.numel and not np.any(values):
        return "all values are 0"
    if t.numel < MIN_CONTENT:
        return f"{t.numel} value(s): a constant of the computation (epsilon, scale, shape)"
    return "no HF parameter holds these values"


def _open(
    source: TFLiteReader | TFLiteFile | str | os.PathLike[str], section: str | None
) -> tuple[TFLiteReader, bool]:
    if isinstance(source, TFLiteReader):
        return source, False
    file = source if isinstance(source, TFLiteFile) else open_file(source)
    return file.open(section), True


def match_weights(
    source: TFLiteReader | TFLiteFile | str | os.PathLike[str],
    hf_folder: str | os.PathLike[str],
    *,
    section: str | None = None,
) -> WeightMatch:
    """Every constant of a TFLite model matched to the HF parameter it came from (module doc)."""
    started = time.perf_counter()
    reader, owned = _open(source, section)
    try:
        with HFWeights(hf_folder) as hf:
            config = json.loads((Path(hf_folder) / "config.json").read_text())
            gemma = str(config.get("model_type", "")).startswith("gemma")
            result = _match(reader, hf, _Matcher(hf, gemma))
    finally:
        if owned:
            reader.close()
    return WeightMatch(
        model=reader.name,
        hf_folder=str(hf_folder),
        seconds=time.perf_counter() - started,
        **result,
    )


def _match(reader: TFLiteReader, hf: HFWeights, matcher: _Matcher) -> dict:
    info = reader.info()
    groups: dict[int, list[tuple[int, TensorInfo]]] = defaultdict(list)
    for sg in info.subgraphs:
        for t in sg.tensors:
            if t.buffer_bytes:
                groups[t.buffer].append((sg.index, t))
    sg_name = {sg.index: sg.name or str(sg.index) for sg in info.subgraphs}
    rows: list[WeightRow] = []
    unmatched: list[UnmatchedTensor] = []
    placements: dict[str, set[str]] = defaultdict(set)
    buffers: dict[str, set[int]] = defaultdict(set)
    for buffer, members in groups.items():
        sg0, t0 = members[0]
        where = tuple(sorted({sg_name[s] for s, _ in members}))
        reason = _not_a_weight(t0)
        rule, found = "", []
        if reason is None:
            names = sorted({p for _, t in members for p in named_candidates(t.name, hf.params)})
            raw = reader.tensor_array(sg0, t0.index, dequantize=False)
            rule, found = matcher.match(raw, t0, names)
            reason = None if found else _no_source(t0, raw)
        for s, t in members:
            if reason is not None:
                unmatched.append(
                    UnmatchedTensor(s, sg_name[s], t.index, t.name, t.dtype, t.shape, reason)
                )
                continue
            d = found[0][2]
            q = quant_of(t)
            rows.append(
                WeightRow(
                    subgraph=s,
                    subgraph_name=sg_name[s],
                    tensor=t.index,
                    name=t.name,
                    dtype=t.dtype,
                    quantization=quant_kind(t),
                    shape=t.shape,
                    buffer=buffer,
                    hf=tuple(p for p, _, _ in found),
                    transform=found[0][1],
                    rule=rule,
                    max_abs=max(f[2].max_abs for f in found),
                    mean_abs=d.mean_abs,
                    step=None if q is None else q.step,
                    step_ratio=max(f[2].step_ratio for f in found),
                    within_step=all(within_step(f[2], q is not None) for f in found),
                    subgraphs=where,
                )
            )
        for param, _, _ in found:
            placements[param].update(where)
            buffers[param].add(buffer)
    hf_unmatched = [_unmatched_param(hf, p) for p in hf.params if p not in placements]
    return {
        "rows": tuple(rows),
        "tflite_unmatched": tuple(unmatched),
        "hf_unmatched": tuple(hf_unmatched),
        "hf_total": len(hf.params),
        "hf_placements": {p: tuple(sorted(s)) for p, s in placements.items()},
        "hf_buffers": {p: len(b) for p, b in buffers.items()},
    }


def _unmatched_param(hf: HFWeights, name: str) -> UnmatchedParam:
    p = hf.params[name]
    values = hf.array(name)
    if values.size and not np.any(values):
        reason = "all values are 0, and no TFLite constant holds them"
    elif values.size and np.all(values == 1):
        reason = "all values are 1, and no TFLite constant holds them"
    else:
        reason = "no TFLite constant holds these values"
    return UnmatchedParam(name, p.shape, p.dtype, reason)
