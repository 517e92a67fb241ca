"""What `recover_config` returns: one `Recovered` value per config field, its table, and how it
compares with the Hugging Face config the model was converted from."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from engine.tflite.graph import SubgraphInfo, TFLiteError

Status = Literal["found", "absent", "unknown"]

# The fields, under their Hugging Face config names, in report order.
FIELDS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "tie_word_embeddings",
    "layer_types",
    "sliding_window",
    "rope_theta",
    "altup_num_inputs",
    "laurel_rank",
    "hidden_size_per_layer_input",
)


@dataclass(frozen=True)
class Recovered:
    """One field read off the graph. `status` "found": `value` is what the graph shows;
    "absent": the graph shows the feature is not there (value None); "unknown": the graph does
    not tell (value None) and `how` says why."""

    value: Any
    evidence_ops: tuple[int, ...]
    evidence_tensors: tuple[int, ...]
    how: str
    status: Status = "found"

    @classmethod
    def unknown(cls, why: str) -> Recovered:
        return cls(None, (), (), why, "unknown")

    @classmethod
    def absent(
        cls, how: str, ops: tuple[int, ...] = (), tensors: tuple[int, ...] = ()
    ) -> Recovered:
        return cls(None, ops, tensors, how, "absent")


def shown_value(r: Recovered) -> str:
    """A value as the table shows it: "unknown" / "none" for the two kinds of None."""
    if r.status == "unknown":
        return "unknown"
    if r.status == "absent":
        return "none"
    if isinstance(r.value, list):
        runs: list[list[Any]] = []
        for v in r.value:
            if runs and runs[-1][0] == v:
                runs[-1][1] += 1
            else:
                runs.append([v, 1])
        return ", ".join(f"{v} × {n}" if n > 1 else str(v) for v, n in runs)
    if isinstance(r.value, dict):
        return ", ".join(f"{k}: {v:g}" for k, v in r.value.items())
    if isinstance(r.value, float):
        return f"{r.value:g}"
    return str(r.value)


def _ids(ids: tuple[int, ...], limit: int) -> str:
    text = ", ".join(map(str, ids[:limit]))
    return text + (f" … ({len(ids)})" if len(ids) > limit else "")


@dataclass(frozen=True)
class RecoveredConfig:
    """The architecture read from one subgraph (the signature the reading started from)."""

    subgraph: int
    signature: str | None
    fields: dict[str, Recovered] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Recovered:
        return self.fields[name]

    @property
    def any_found(self) -> bool:
        return any(r.status == "found" for r in self.fields.values())

    def values(self) -> dict[str, Any]:
        return {k: r.value for k, r in self.fields.items()}

    def evidence(self, name: str, sg: SubgraphInfo | None = None, limit: int = 6) -> str:
        """ "ops 22, 69; tensors 3 (kv_cache_k_0), …": a field's evidence in one line."""
        r = self.fields[name]
        parts = []
        if r.evidence_ops:
            parts.append("ops " + _ids(r.evidence_ops, limit))
        if r.evidence_tensors:
            ts = r.evidence_tensors
            if sg is not None:
                names = [f"{t} ({_tail(sg.tensors[t].name)})" for t in ts[:limit]]
                more = f" … ({len(ts)})" if len(ts) > limit else ""
                parts.append("tensors " + ", ".join(names) + more)
            else:
                parts.append("tensors " + _ids(ts, limit))
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the signature read and, per field, value, status, how and evidence."""
        return {
            "signature": self.signature,
            "subgraph": self.subgraph,
            "fields": {
                name: {
                    "value": r.value,
                    "status": r.status,
                    "how": r.how,
                    "evidence_ops": list(r.evidence_ops),
                    "evidence_tensors": list(r.evidence_tensors),
                }
                for name, r in self.fields.items()
            },
        }

    def to_table(self, sg: SubgraphInfo | None = None) -> pd.DataFrame:
        """One row per field: field, value, status, evidence, how."""
        rows = [
            {
                "field": name,
                "value": shown_value(r),
                "status": r.status,
                "evidence": self.evidence(name, sg),
                "how": r.how,
            }
            for name, r in self.fields.items()
        ]
        return pd.DataFrame(rows, columns=["field", "value", "status", "evidence", "how"])

    def compare_with(self, hf_config: dict[str, Any]) -> pd.DataFrame:
        """Per field: recovered, source (from the HF config), equal (None where unknown)."""
        source = source_values(hf_config)
        rows = []
        for name, r in self.fields.items():
            want = source.get(name)
            equal = None if r.status == "unknown" else same(r.value, want)
            rows.append(
                {
                    "field": name,
                    "recovered": shown_value(r),
                    "source": "none" if want is None else _plain(want),
                    "equal": equal,
                    "status": r.status,
                }
            )
        return pd.DataFrame(rows, columns=["field", "recovered", "source", "equal", "status"])


def _tail(name: str, limit: int = 40) -> str:
    """The end of a converter name (its module path is long): `…Linear_q_proj;1`."""
    name = name.split("/")[-1]
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def _plain(value: Any) -> str:
    return shown_value(Recovered(value, (), (), ""))


def same(a: Any, b: Any) -> bool:
    """Equal, with floats compared to six significant digits (RoPE bases are float32 in)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
            return False
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    return a == b


def source_values(hf: dict[str, Any]) -> dict[str, Any]:
    """The config's values in the shape `recover_config` reports them (per-layer lists, per
    layer-type RoPE bases, None for a feature the model does not have)."""
    layers = hf.get("num_hidden_layers")
    heads = hf.get("num_attention_heads")
    width = hf.get("intermediate_size")
    if isinstance(width, int) and layers:
        width = [width] * layers
    types = hf.get("layer_types")
    if types is None and layers:
        window = hf.get("sliding_window") if hf.get("use_sliding_window", True) else None
        # a config without layer types and with a window slides in every layer (Mistral)
        kind = "sliding_attention" if window else "full_attention"
        types = [kind] * layers
    sliding = bool(types) and "sliding_attention" in types
    head_dim = hf.get("head_dim")
    if head_dim is None and heads:
        head_dim = hf.get("hidden_size", 0) // heads
    return {
        "num_hidden_layers": layers,
        "hidden_size": hf.get("hidden_size"),
        "num_attention_heads": heads,
        "num_key_value_heads": hf.get("num_key_value_heads", heads),
        "head_dim": head_dim,
        "intermediate_size": width,
        "vocab_size": hf.get("vocab_size"),
        "tie_word_embeddings": hf.get("tie_word_embeddings", True),
        "layer_types": types,
        "sliding_window": hf.get("sliding_window") if sliding else None,
        "rope_theta": _rope(hf, types or []),
        "altup_num_inputs": hf.get("altup_num_inputs"),
        "laurel_rank": hf.get("laurel_rank"),
        "hidden_size_per_layer_input": hf.get("hidden_size_per_layer_input"),
    }


def _rope(hf: dict[str, Any], types: list[str]) -> float | dict[str, float] | None:
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if isinstance(params, dict) and params and all(isinstance(v, dict) for v in params.values()):
        used = [t for t in dict.fromkeys(types) if t in params]
        bases = {t: float(params[t]["rope_theta"]) for t in used if "rope_theta" in params[t]}
        if len(set(bases.values())) == 1:
            return next(iter(bases.values()))
        return bases or None
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    theta = theta if theta is not None else hf.get("rope_theta")
    return float(theta) if theta is not None else None


def load_hf_config(folder: str | Path) -> dict[str, Any]:
    """`config.json` of a Hugging Face model folder (or the file itself); a one-sentence
    `TFLiteError` when there is none or it is not a JSON object. A multimodal config's text
    part (`text_config`) is what a text decoder graph is compared with."""
    path = Path(folder)
    path = path / "config.json" if path.is_dir() else path
    if not path.is_file():
        raise TFLiteError(f"{folder} has no config.json to compare with.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TFLiteError(f"{path} is not readable JSON ({exc.__class__.__name__}).") from None
    if not isinstance(config, dict):
        raise TFLiteError(f"{path} holds no JSON object.")
    text = config.get("text_config")
    return text if isinstance(text, dict) and "num_hidden_layers" in text else config
