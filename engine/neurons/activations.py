"""Per-neuron activation statistics on a corpus, with each neuron's top-activating snippets.

One streaming pass: every layer's down-projection input (the neuron vector, as in
engine/ica/capture.py) feeds float64 sums, min/max, positive counts and a running top-k per
neuron, so memory stays (neurons × k) however many tokens go through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine.atomic import write_json_atomic, write_parquet_atomic
from engine.errors import SubnetScopeError
from engine.neurons.config import DEMO_ACTIVATIONS, KIND

if TYPE_CHECKING:
    import torch

    from engine.models import LoadedModel

STATS_FILE = "stats.parquet"
SNIPPETS_FILE = "snippets.parquet"
META_FILE = "meta.json"  # written last: a folder with it holds the other two
RIGHT_CONTEXT = 3  # tokens shown after the hit
STAT_COLUMNS = ["mean", "std", "min", "max", "mean_abs", "positive_share"]

Progress = Callable[[float, str], None]


@dataclass
class ActivationStats:
    """Statistics of every neuron of every layer, their top snippets and how they were made."""

    stats: pd.DataFrame  # layer, neuron, mean, std, min, max, mean_abs, positive_share
    snippets: pd.DataFrame  # layer, neuron, rank, value, text_index, position, left, token, right
    meta: dict
    path: Path | None = None

    def neuron(self, layer: int, neuron: int) -> tuple[dict, pd.DataFrame]:
        """Its stats row (plus its mean-|a| rank in its layer, 1 = loudest) and its snippets."""
        in_layer = self.stats[self.stats["layer"] == layer]
        row = in_layer[in_layer["neuron"] == neuron]
        if row.empty:
            widths = self.meta.get("neurons_per_layer") or []
            raise SubnetScopeError(
                f"no neuron L{layer}.{neuron} in these statistics "
                f"({len(widths)} layers, neuron 0–{max(widths, default=1) - 1})"
            )
        out = row.to_dict("records")[0]  # native ints for layer/neuron, floats for the rest
        out["mean_abs_rank_in_layer"] = int((in_layer["mean_abs"] > out["mean_abs"]).sum()) + 1
        snips = self.snippets
        mine = snips[(snips["layer"] == layer) & (snips["neuron"] == neuron)]
        return out, mine.sort_values("rank").reset_index(drop=True)


class _LayerAccumulator:
    """Running moments, extremes and top-k of one layer's neurons (torch, CPU)."""

    def __init__(self, width: int, top_k: int) -> None:
        import torch

        self.top_k = top_k
        self.count = 0
        self.mean = torch.zeros(width, dtype=torch.float64)
        self.m2 = torch.zeros(width, dtype=torch.float64)  # sum of squared deviations
        self.sum_abs = torch.zeros(width, dtype=torch.float64)
        self.min = torch.full((width,), float("inf"))
        self.max = torch.full((width,), float("-inf"))
        self.positive = torch.zeros(width, dtype=torch.float64)  # counts
        self.top_values = torch.empty((width, 0))  # (neurons, ≤k), descending
        self.top_rows = torch.empty((width, 0), dtype=torch.int64)  # token rows of those values

    def add(self, acts: torch.Tensor, first_row: int) -> None:
        """acts: (tokens, neurons) float32 of the global token rows first_row, first_row + 1, ..."""
        import torch

        # One batch's moments in float32 (a few hundred tokens), merged into float64 running
        # moments with Chan et al.'s parallel update: no E[x²]−E[x]² cancellation, and a third
        # of the memory traffic of casting every batch to float64 (this runs 30× per batch).
        n = acts.shape[0]
        batch_mean = acts.mean(0)
        batch_m2 = (acts - batch_mean).square_().sum(0).double()
        delta = batch_mean.double() - self.mean
        total = self.count + n
        self.mean += delta * (n / total)
        self.m2 += batch_m2 + delta.square() * (self.count * n / total)
        self.count = total
        self.sum_abs += acts.abs().sum(0).double()
        # sign → {1, 0, 0} counts positives exactly, 4× faster than summing a bool mask
        self.positive += acts.sign().clamp_(min=0).sum(0).double()
        batch_max = acts.amax(0)
        self.min = torch.minimum(self.min, acts.amin(0))
        self.max = torch.maximum(self.max, batch_max)
        self._merge_top(acts, first_row, batch_max)

    def _merge_top(self, acts: torch.Tensor, first_row: int, batch_max: torch.Tensor) -> None:
        import torch

        kept = self.top_values.shape[1]
        cols = None
        if kept == self.top_k:
            # Only neurons with a token above their k-th value can change; after the first
            # batches that is a minority, so the top-k runs on those columns alone.
            cols = (batch_max > self.top_values[:, -1]).nonzero().squeeze(1)
            if cols.numel() == 0:
                return
            acts = acts.index_select(1, cols)
        old_values = self.top_values if cols is None else self.top_values[cols]
        old_rows = self.top_rows if cols is None else self.top_rows[cols]
        values = torch.cat([old_values, acts.T], dim=1)  # (neurons, kept + tokens)
        top = values.topk(min(self.top_k, values.shape[1]), dim=1)
        rows = first_row + top.indices - kept  # a batch token's global row
        if kept:
            from_old = old_rows.gather(1, top.indices.clamp(max=kept - 1))
            rows = torch.where(top.indices < kept, from_old, rows)
        if cols is None:
            self.top_values, self.top_rows = top.values, rows
        else:
            self.top_values[cols] = top.values
            self.top_rows[cols] = rows


def _check_options(top_k: int, max_length: int, batch_size: int, context: int) -> None:
    for name, value, least in (
        ("top_k", top_k, 1),
        ("max_length", max_length, 1),
        ("batch_size", batch_size, 1),
        ("context", context, 0),
    ):
        if int(value) < least:
            raise SubnetScopeError(f"{name} must be ≥ {least}, not {value}")


def _snippet_text(
    tokenizer: Any,
    encoded: list[list[int]],
    text_rows: np.ndarray,
    positions: np.ndarray,
    context: int,
) -> tuple[list[str], list[str], list[str]]:
    """(left, token, right) strings per hit. Each piece is the growth of a decode of the growing
    prefix, so tokenizers that drop a word's leading space when decoded alone still show it."""
    decode = tokenizer.decode
    lefts, tokens, rights = [], [], []
    for t, p in zip(text_rows.tolist(), positions.tolist(), strict=True):
        ids = encoded[t]
        start, end = max(0, p - context), p + 1 + RIGHT_CONTEXT
        left = decode(ids[start:p])
        with_token = decode(ids[start : p + 1])
        full = decode(ids[start:end])
        token = with_token[len(left) :] if with_token.startswith(left) else decode([ids[p]])
        right = full[len(with_token) :] if full.startswith(with_token) else decode(ids[p + 1 : end])
        lefts.append(left)
        tokens.append(token)
        rights.append(right)
    return lefts, tokens, rights


def compute_activation_stats(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    top_k: int = 5,
    max_length: int = 64,
    batch_size: int = 8,
    context: int = 10,
    progress: Progress | None = None,
) -> ActivationStats:
    """Stats of every neuron over the (non-special, non-padding) tokens of `texts`."""

    from engine.ica.capture import encode_texts, forward_tokens

    _check_options(top_k, max_length, batch_size, context)
    report = progress or (lambda fraction, message: None)
    started = time.monotonic()
    arch = loaded.architecture
    encoded = encode_texts(loaded, texts, max_length)
    lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        raise SubnetScopeError("the texts hold no tokens to compute activation statistics on")
    # Global token row r (texts in order, tokens in order) → where it came from.
    text_of_row = np.repeat(np.arange(len(encoded), dtype=np.int32), lengths)
    position_of_row = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])

    accumulators = [_LayerAccumulator(w, top_k) for w in arch.neurons_per_layer]

    def accumulate(layer: int, first_row: int, rows: torch.Tensor) -> None:
        accumulators[layer].add(rows, first_row)

    def batch_done(done: int, of: int) -> None:
        report(0.95 * done / of, f"{done}/{of} texts")

    forward_tokens(
        loaded,
        encoded,
        range(arch.num_layers),
        accumulate,
        batch_size=batch_size,
        on_batch=batch_done,
    )

    report(0.95, "decoding snippets")
    stats = _stats_table(accumulators, total)
    snippets = _snippet_table(
        accumulators, loaded.tokenizer, encoded, text_of_row, position_of_row, context
    )
    meta = {
        "model": loaded.source,
        "model_name": loaded.display_name,
        "family": arch.family,
        "neurons_per_layer": [int(w) for w in arch.neurons_per_layer],
        "dataset": None,
        "samples": len(texts),
        "tokens": total,
        "texts": len(texts),
        "max_length": int(max_length),
        "top_k": int(top_k),
        "context": int(context),
        "seconds": round(time.monotonic() - started, 2),
    }
    report(1.0, f"{total} tokens through {arch.num_layers} layers")
    return ActivationStats(stats=stats, snippets=snippets, meta=meta)


def _stats_table(accumulators: list[_LayerAccumulator], total: int) -> pd.DataFrame:
    parts = []
    for layer, acc in enumerate(accumulators):
        mean = acc.mean.numpy()
        var = acc.m2.numpy() / total  # population variance
        parts.append(
            pd.DataFrame(
                {
                    "layer": np.full(len(mean), layer, dtype=np.int32),
                    "neuron": np.arange(len(mean), dtype=np.int32),
                    "mean": mean,
                    "std": np.sqrt(var),
                    "min": acc.min.numpy().astype(np.float64),
                    "max": acc.max.numpy().astype(np.float64),
                    "mean_abs": (acc.sum_abs / total).numpy(),
                    "positive_share": acc.positive.numpy() / total,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _snippet_table(
    accumulators: list[_LayerAccumulator],
    tokenizer: Any,
    encoded: list[list[int]],
    text_of_row: np.ndarray,
    position_of_row: np.ndarray,
    context: int,
) -> pd.DataFrame:
    parts = []
    for layer, acc in enumerate(accumulators):
        width, k = acc.top_rows.shape
        parts.append(
            pd.DataFrame(
                {
                    "layer": np.full(width * k, layer, dtype=np.int32),
                    "neuron": np.repeat(np.arange(width, dtype=np.int32), k),
                    "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), width),
                    "value": acc.top_values.numpy().reshape(-1),
                    "row": acc.top_rows.numpy().reshape(-1),
                }
            )
        )
    table = pd.concat(parts, ignore_index=True)
    # Many neurons share their loudest tokens: decode each distinct token once.
    unique, inverse = np.unique(table.pop("row").to_numpy(), return_inverse=True)
    table["text_index"] = text_of_row[unique][inverse]
    table["position"] = position_of_row[unique][inverse]
    pieces = _snippet_text(
        tokenizer, encoded, text_of_row[unique], position_of_row[unique], context
    )
    for name, strings in zip(("left", "token", "right"), pieces, strict=True):
        table[name] = np.asarray(strings, dtype=object)[inverse]
    return table


def save_activation_stats(stats: ActivationStats, folder: Path) -> Path:
    """Write stats.parquet, snippets.parquet and (last) meta.json into `folder`; returns it."""
    folder = Path(folder)
    write_parquet_atomic(folder / STATS_FILE, stats.stats, index=False)
    write_parquet_atomic(folder / SNIPPETS_FILE, stats.snippets, index=False)
    write_json_atomic(folder / META_FILE, stats.meta)
    stats.path = folder
    return folder


def load_activation_stats(folder: str | Path) -> ActivationStats:
    """The statistics saved in `folder` (or in the result folder of a job folder)."""
    folder = Path(folder).expanduser()
    if not (folder / META_FILE).is_file() and (folder / "result" / META_FILE).is_file():
        folder = folder / "result"
    missing = [n for n in (META_FILE, STATS_FILE, SNIPPETS_FILE) if not (folder / n).is_file()]
    if missing:
        raise SubnetScopeError(
            f"no activation statistics in '{folder}' (missing {', '.join(missing)}); "
            f"run a {KIND} job to make them"
        )
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        stats = pd.read_parquet(folder / STATS_FILE)
        snippets = pd.read_parquet(folder / SNIPPETS_FILE)
    except (OSError, ValueError) as exc:
        message = f"cannot read the activation statistics in '{folder}': {exc}"
        raise SubnetScopeError(message) from exc
    return ActivationStats(stats=stats, snippets=snippets, meta=meta, path=folder)


@dataclass(frozen=True)
class ActivationRun:
    label: str
    path: Path  # the result folder
    job_id: str
    model: str
    is_demo: bool


def list_activation_runs(limit: int = 100) -> list[ActivationRun]:
    """Statistics written by succeeded `neurons.activations` jobs: the demo's first, then newest."""
    from engine.jobs.finished import finished_results

    runs = []
    for found in finished_results(KIND, META_FILE, DEMO_ACTIVATIONS, limit):
        p, job_id = found.params, found.view.id
        what = f"{p.get('dataset')} · {p.get('samples')} texts"
        label = (
            f"Demo activations · {what}"
            if found.is_demo
            else f"{p.get('model')} · {what} ({job_id})"
        )
        runs.append(ActivationRun(label, found.path, job_id, str(p.get("model")), found.is_demo))
    return runs
