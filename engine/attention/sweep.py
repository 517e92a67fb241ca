"""The localize sweep (seed 003: "can the local:global ratio change without loss?"): the NLL of the
same token windows with the model as it is, then with each chosen global layer made a
sliding-window layer of width w (engine.attention.localize), one layer at a time; layers ranked
by the loss of going local."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from engine.attention.config import GLOBAL, SweepConfig, check_positions
from engine.attention.layout import LayerAttention, attention_layout, layout_table
from engine.attention.localize import localized
from engine.errors import SubnetScopeError
from engine.evaluation.perplexity import sliding_window_nll
from engine.models import LoadedModel, parse_layers

SWEEP_COLUMNS = ["layer", "window", "nll", "delta_nll", "perplexity", "tokens", "rank"]
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class SweepResult:
    frame: pd.DataFrame  # SWEEP_COLUMNS; rank 1 = the cheapest layer to make local at that window
    baseline: dict[str, Any]  # the model as it is: nll, perplexity, tokens, and what was run
    layout: pd.DataFrame  # layout_table of the model

    def summary(self) -> dict[str, Any]:
        """The baseline, and per window the cheapest and costliest layer (the manifest's)."""
        per_window = []
        for window, rows in self.frame.groupby("window", sort=True):
            cheap = rows.loc[rows["delta_nll"].idxmin()]
            dear = rows.loc[rows["delta_nll"].idxmax()]
            per_window.append(
                {
                    "window": int(window),
                    "cheapest_layer": int(cheap["layer"]),
                    "cheapest_delta_nll": float(cheap["delta_nll"]),
                    "costliest_layer": int(dear["layer"]),
                    "costliest_delta_nll": float(dear["delta_nll"]),
                }
            )
        first = per_window[0]
        return {
            **self.baseline,
            "layers_swept": int(self.frame["layer"].nunique()),
            "windows": [w["window"] for w in per_window],
            "cheapest_layer": first["cheapest_layer"],
            "costliest_layer": first["costliest_layer"],
            "per_window": per_window,
            "message": (
                f"w={first['window']}: cheapest layer {first['cheapest_layer']} "
                f"(ΔNLL {first['cheapest_delta_nll']:+.4f}), costliest layer "
                f"{first['costliest_layer']} (ΔNLL {first['costliest_delta_nll']:+.4f})"
            ),
        }


def token_batch(loaded: LoadedModel, source: str, *, texts: int, max_tokens: int) -> torch.Tensor:
    """The first `texts` consecutive windows of `max_tokens` tokens of a text source (texts joined
    by EOS, each window starting with BOS where the tokenizer has one): (texts, max_tokens)."""
    from engine.data import load_texts, token_windows

    check_positions(loaded.model.config, max_tokens, loaded.display_name)
    all_texts = load_texts(source)
    # Enough characters for the windows (≈ 4 per token in English, with a margin), else all.
    budget, chosen = texts * max_tokens * 8, []
    for text in all_texts:
        chosen.append(text)
        budget -= len(text)
        if budget <= 0:
            break
    windows = token_windows(loaded.tokenizer, chosen, length=max_tokens)
    if len(windows) < texts and len(chosen) < len(all_texts):
        windows = token_windows(loaded.tokenizer, all_texts, length=max_tokens)
    if len(windows) < texts:
        raise SubnetScopeError(
            f"'{source}' gives {len(windows)} windows of {max_tokens} tokens, fewer than the "
            f"{texts} asked for; ask for fewer texts or tokens"
        )
    return windows[:texts]  # (texts, max_tokens)


def batch_nll(loaded: LoadedModel, ids: torch.Tensor) -> tuple[float, int]:
    """Summed NLL (nats) of every token after the first of each row of `ids` (n, T), each row one
    forward pass on its own, and the number of tokens scored."""
    total, tokens = 0.0, 0
    for row in ids:
        nll, scored, _ = sliding_window_nll(
            loaded.model, row[None].to(loaded.device), window=len(row), stride=len(row)
        )
        total += nll
        tokens += scored
    return total, tokens


def chosen_layers(layout: list[LayerAttention], spec: str) -> list[int]:
    """The layers a sweep makes local: every global layer, or a pattern of global layers."""
    if spec.strip().lower() == GLOBAL:
        layers = [a.layer for a in layout if a.kind == "global"]
        if not layers:
            raise SubnetScopeError("the model has no global attention layer to make local")
        return layers
    layers = list(parse_layers(spec, len(layout)))
    local = [layout[i] for i in layers if layout[i].kind != "global"]
    if local:
        raise SubnetScopeError(
            f"layer {local[0].layer} is already local (window {local[0].window}); the sweep makes "
            "global layers local"
        )
    return layers


def localize_sweep(
    loaded: LoadedModel,
    ids: torch.Tensor,
    layers: list[int],
    windows: tuple[int, ...],
    *,
    sinks: int = 0,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The baseline (nll, perplexity, tokens) and one row per (layer, window) of SWEEP_COLUMNS;
    `sinks` first tokens stay visible inside each window (engine.attention.localize)."""
    report = progress or (lambda fraction, message: None)
    total = len(layers) * len(windows) + 1
    report(0.0, f"baseline over {len(ids)} texts × {ids.shape[1]} tokens")
    nll, tokens = batch_nll(loaded, ids)
    base = nll / tokens
    baseline = {"nll": base, "perplexity": math.exp(base), "tokens": tokens}
    rows = []
    for window in windows:
        for layer in layers:
            with localized(loaded, [layer], window, sinks=sinks):
                nll, scored = batch_nll(loaded, ids)
            mean = nll / scored
            rows.append(
                {
                    "layer": layer,
                    "window": window,
                    "nll": mean,
                    "delta_nll": mean - base,
                    "perplexity": math.exp(mean),
                    "tokens": scored,
                }
            )
            report(
                len(rows) / total,
                f"layer {layer} local (w={window}): ΔNLL {mean - base:+.4f}",
            )
    frame = pd.DataFrame(rows, columns=SWEEP_COLUMNS[:-1])
    frame["rank"] = (
        frame.groupby("window")["delta_nll"].rank(method="first", ascending=True).astype(int)
    )
    return baseline, frame[SWEEP_COLUMNS]


def run_sweep(
    config: SweepConfig,
    *,
    loaded: LoadedModel | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """The `attention.sweep` job's work: load, cut the token windows, sweep, rank."""
    from engine.models import load_model
    from engine.models.loading import source_config

    report = progress or (lambda fraction, message: None)
    if loaded is None:
        check_positions(source_config(config.model), config.max_tokens, config.model)
        report(0.0, f"loading {config.model} ({config.dtype})")
        loaded = load_model(config.model, dtype=config.dtype)
    layout = attention_layout(loaded.model.config)
    layers = chosen_layers(layout, config.layers)
    report(0.02, f"reading {config.text}")
    ids = token_batch(loaded, config.text, texts=config.texts, max_tokens=config.max_tokens)
    baseline, frame = localize_sweep(
        loaded,
        ids,
        layers,
        config.windows,
        sinks=config.sinks,
        progress=lambda fraction, message: report(0.05 + 0.95 * fraction, message),
    )
    baseline |= {
        "model": loaded.source,
        "dtype": str(loaded.dtype).removeprefix("torch."),  # what `dtype` resolved to
        "text": config.text,
        "texts": int(ids.shape[0]),
        "max_tokens": int(ids.shape[1]),
        "sinks": config.sinks,
    }
    return SweepResult(frame, baseline, layout_table(loaded.model.config))
