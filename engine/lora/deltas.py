"""Delta activations (seed 004): how an adapter moves a model's last-token state over probe texts.

v(M) is the mean over probe texts of the last-layer hidden state at each text's last real token;
Δ(M, B) = v(M) − v(B). The base state and each adapter's state are cached on disk (keyed by the
model's weights, the probe texts and the adapter's factors); blends are computed live.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from engine.errors import SubnetScopeError
from engine.lora.live import apply_lora
from engine.lora.lowrank import Factors
from engine.lora.probes import PROBE_SETS, probe_texts
from engine.models.devices import accumulation_dtype, input_device
from engine.models.loading import LoadedModel

if TYPE_CHECKING:
    from engine.lora.adapters import AdapterSet

CACHE_KIND = "lora-state"
# Elements of each parameter sampled (evenly spaced over the whole tensor) for the model
# fingerprint; whole-tensor sums beside them catch a change the sample misses (a row-sparse edit).
_FINGERPRINT_ELEMENTS = 4096
_MOMENT_CHUNK = 1 << 24  # elements per float64 chunk of the fingerprint sums (128 MiB)
# LLGBM's `get_average_activation` reads up to 256 tokens per probe.
MAX_LENGTH = 256


def right_padded(
    tokenizer, texts: Sequence[str], max_length: int
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(input_ids (n, seq), attention mask (n, seq), lengths) of `texts` truncated to `max_length`
    and padded on the right whatever the tokenizer's padding side: positions are those of the
    unpadded texts, so causal attention keeps pads out of every real token's state."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    lengths = [len(row) for row in ids]
    if min(lengths) == 0:
        raise SubnetScopeError(f"probe text {texts[lengths.index(0)]!r} has no tokens")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(ids), max(lengths)), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, tokens in enumerate(ids):
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        attention[row, : len(tokens)] = 1
    return input_ids, attention, lengths


def mean_last_state(
    loaded: LoadedModel,
    texts: Sequence[str],
    factors: Mapping[str, Factors] | None = None,
    batch_size: int = 8,
    max_length: int = MAX_LENGTH,
) -> torch.Tensor:
    """v(M): mean over `texts` of hidden_states[-1] at each text's last token, (hidden,) float32.

    Texts are padded on the right whatever the tokenizer's padding side, so positions are those of
    the unpadded text and causal attention keeps pads out of every real token's state.
    """
    if not texts:
        raise SubnetScopeError("delta activations need at least one probe text")
    if batch_size < 1 or max_length < 1:
        raise SubnetScopeError("batch size and max length must be at least 1")
    total: torch.Tensor | None = None
    with torch.inference_mode(), apply_lora(loaded, factors):
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            input_ids, attention, lengths = right_padded(loaded.tokenizer, batch, max_length)
            device = input_device(loaded.model)
            # The backbone's final state, without the LM head: hidden_states[-1] of the full model
            # for every family but Gemma 3n, whose hidden_states stack its AltUp streams.
            backbone = getattr(loaded.model, "base_model", loaded.model)
            out = backbone(input_ids=input_ids.to(device), attention_mask=attention.to(device))
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            last = torch.tensor(lengths, device=hidden.device) - 1  # (b,)
            states = hidden[torch.arange(len(lengths), device=hidden.device), last]  # (b, hidden)
            summed = states.cpu().double().sum(dim=0)  # (hidden,); MPS has no float64
            total = summed if total is None else total + summed
    return (total / len(texts)).float()


@dataclass
class DeltaTable:
    """Δ per adapter and blend: `vectors[i]` = v(M_i) − v(base); `base` = v(base)."""

    names: list[str]
    kinds: list[str]  # "adapter" | "blend"
    vectors: np.ndarray  # (n, hidden) float32 deltas
    base: np.ndarray  # (hidden,) float32
    probes: str
    cached: list[bool] = field(default_factory=list)  # per row: read from the disk cache
    max_length: int = MAX_LENGTH
    truncated: int = 0  # probe texts longer than max_length (cut to their first tokens)

    def delta(self, name: str) -> np.ndarray:
        """Δ of one row, (hidden,)."""
        if name not in self.names:
            raise SubnetScopeError(f"no delta named '{name}'; have {', '.join(self.names)}")
        return self.vectors[self.names.index(name)]

    def to_json(self) -> dict:
        return {
            "probes": self.probes,
            "max_length": self.max_length,
            "truncated": self.truncated,
            "hidden_size": int(self.base.shape[0]),
            "rows": [
                {"name": n, "kind": k, "norm": float(np.linalg.norm(v))}
                for n, k, v in zip(self.names, self.kinds, self.vectors, strict=True)
            ],
        }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _moments(flat: torch.Tensor) -> torch.Tensor:
    """[Σx, Σx²] as float64 on the CPU, summed on the tensor's device in chunks: no float64 copy
    of a whole embedding (2.4 GB for Gemma-3-1B's), and float32 on MPS, which has no float64."""
    dtype = accumulation_dtype(flat.device)
    total = torch.zeros(2, dtype=dtype, device=flat.device)
    for chunk in flat.split(_MOMENT_CHUNK):
        part = chunk.to(dtype)
        total += torch.stack([part.sum(), (part * part).sum()])
    return total.cpu().double()


def model_fingerprint(loaded: LoadedModel) -> dict:
    """Cheap identity of the model's weights: class, dtype and, per parameter, an evenly spaced
    sample plus the float64 sum and sum of squares of the whole tensor."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in loaded.model.state_dict().items():
            flat = param.detach().flatten()
            step = max(1, flat.numel() // _FINGERPRINT_ELEMENTS)
            sample = flat[::step][:_FINGERPRINT_ELEMENTS].float().cpu()
            sums = _moments(flat)
            digest.update(f"{name}:{tuple(param.shape)}".encode())
            digest.update(sample.numpy().tobytes())
            digest.update(sums.numpy().tobytes())
    return {
        "class": type(loaded.model).__name__,
        "dtype": str(loaded.dtype),
        "device": loaded.device.type,
        "weights": digest.hexdigest(),
    }


def factors_fingerprint(factors: Mapping[str, Factors]) -> str:
    """The hash of an adapter's update: every module's factors and scale, exactly."""
    digest = hashlib.sha256()
    for path in sorted(factors):
        f = factors[path]
        digest.update(f"{path}:{tuple(f.b.shape)}:{tuple(f.a.shape)}:{f.scale!r}".encode())
        for t in (f.b, f.a):
            digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _cached_state(
    loaded: LoadedModel,
    texts: list[str],
    factors: Mapping[str, Factors] | None,
    *,
    model_fp: dict,
    batch_size: int,
    max_length: int,
    cache: bool,
) -> tuple[torch.Tensor, bool]:
    """v(M) from the disk cache or computed (and stored); also whether it came from the cache."""
    if not cache:
        return mean_last_state(loaded, texts, factors, batch_size, max_length), False
    from engine.cache import ArtifactStore

    inputs = {
        "model": model_fp,
        "probes": _sha(json.dumps(texts, ensure_ascii=False).encode()),
        "adapter": factors_fingerprint(factors) if factors else None,
    }
    params = {"max_length": max_length}
    computed = []

    def compute(writer) -> None:
        state = mean_last_state(loaded, texts, factors, batch_size, max_length)
        writer.write_tensors("state.safetensors", {"state": state})
        computed.append(True)

    entry = ArtifactStore().get_or_compute(CACHE_KIND, inputs, params, compute)
    return entry.read_tensors("state.safetensors")["state"].float(), not computed


def delta_activations(
    loaded: LoadedModel,
    adapters: AdapterSet,
    probes: str,
    blends: Mapping[str, Mapping[str, Factors]] | None = None,
    cache: bool = True,
    *,
    batch_size: int = 8,
    max_length: int = MAX_LENGTH,
) -> DeltaTable:
    """Δ for every adapter (cached on disk with the base) and every blend (computed live)."""
    texts = probe_texts(probes)
    if not adapters.adapters:
        raise SubnetScopeError("delta activations need at least one adapter")
    model_fp = model_fingerprint(loaded) if cache else {}
    options = {"model_fp": model_fp, "batch_size": batch_size, "max_length": max_length}
    base, _ = _cached_state(loaded, texts, None, cache=cache, **options)
    names, kinds, rows, cached = [], [], [], []
    for adapter in adapters.adapters:
        state, hit = _cached_state(loaded, texts, adapter.factors, cache=cache, **options)
        names.append(adapter.info.name)
        kinds.append("adapter")
        rows.append(state - base)
        cached.append(hit)
    for name, factors in (blends or {}).items():
        if name in names:
            raise SubnetScopeError(f"blend name '{name}' is already an adapter's name")
        state = mean_last_state(loaded, texts, factors, batch_size, max_length)
        names.append(name)
        kinds.append("blend")
        rows.append(state - base)
        cached.append(False)
    return DeltaTable(
        names=names,
        kinds=kinds,
        vectors=torch.stack(rows).numpy().astype(np.float32),  # (n, hidden)
        base=base.numpy().astype(np.float32),
        probes=probes if probes in PROBE_SETS else str(Path(probes).expanduser()),
        cached=cached,
        max_length=max_length,
        truncated=count_truncated(loaded.tokenizer, texts, max_length),
    )


def count_truncated(tokenizer, texts: Sequence[str], max_length: int) -> int:
    """How many texts have more than `max_length` tokens (and are cut to their first ones)."""
    return sum(len(ids) > max_length for ids in tokenizer(list(texts))["input_ids"])


def delta_map(table: DeltaTable) -> pd.DataFrame:
    """2-D map: name, kind, x, y, norm; PCA fitted on the adapters' deltas and the base (origin).

    Blends are projected into the adapters' PCA space, so a blend moves as its weights move and a
    blend equal to one adapter lands on it. A base row (kind "base") sits at (0, 0). The
    explained-variance fraction of each axis is in `attrs["explained"]`.
    """
    vectors = table.vectors.astype(np.float64)  # (n, hidden)
    is_adapter = np.array([k == "adapter" for k in table.kinds], dtype=bool)
    if not is_adapter.any():
        raise SubnetScopeError("a delta map needs at least one adapter")
    fit = np.vstack([np.zeros((1, vectors.shape[1])), vectors[is_adapter]])  # (m+1, hidden)
    center = fit.mean(axis=0)
    _, s, vh = np.linalg.svd(fit - center, full_matrices=False)  # vh (k, hidden)
    keep = int((s > 1e-9 * s[0]).sum()) if s.size and s[0] > 0 else 0
    axes = np.zeros((2, vectors.shape[1]))
    for i in range(min(2, keep)):
        # A fixed sign: the adapter farthest along this axis lies on its positive side.
        scores = vectors[is_adapter] @ vh[i]
        axes[i] = -vh[i] if scores[np.argmax(np.abs(scores))] < 0 else vh[i]
    points = np.vstack([np.zeros((1, vectors.shape[1])), vectors])  # base first
    # Axes from the centered fit; coordinates measured from the base, so it sits at (0, 0).
    coords = points @ axes.T  # (n+1, 2)
    total = float((s**2).sum())
    explained = [float(s[i] ** 2 / total) if i < keep and total > 0 else 0.0 for i in range(2)]
    frame = pd.DataFrame(
        {
            "name": ["base", *table.names],
            "kind": ["base", *table.kinds],
            "x": coords[:, 0],
            "y": coords[:, 1],
            "norm": np.linalg.norm(points, axis=1),
        }
    )
    frame.attrs["explained"] = explained
    return frame


def delta_distances(table: DeltaTable) -> pd.DataFrame:
    """Every pair of rows (a before b): Euclidean distance and cosine of their deltas."""
    vectors = table.vectors.astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    rows = []
    for i in range(len(table.names)):
        for j in range(i + 1, len(table.names)):
            denominator = norms[i] * norms[j]
            cosine = float(vectors[i] @ vectors[j] / denominator) if denominator > 0 else np.nan
            rows.append(
                {
                    "a": table.names[i],
                    "b": table.names[j],
                    "distance": float(np.linalg.norm(vectors[i] - vectors[j])),
                    "cosine": cosine,
                }
            )
    return pd.DataFrame(rows, columns=["a", "b", "distance", "cosine"])
