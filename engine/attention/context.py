"""Attention against context length (seed 003): the per-head statistics of the same long texts cut
at each length, with the time and the largest score block each length took."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from engine.attention.capture import head_stats
from engine.attention.config import ContextConfig, check_positions
from engine.attention.layout import layout_table
from engine.errors import SubnetScopeError
from engine.models import LoadedModel

TIMING_COLUMNS = ["length", "seconds", "largest_block_bytes", "tokens"]
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ContextResult:
    frame: pd.DataFrame  # `length` + HeadStats.frame's columns, one block of rows per length
    timing: pd.DataFrame  # TIMING_COLUMNS, one row per length
    layout: pd.DataFrame  # layout_table of the model
    meta: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        longest = self.timing.iloc[-1]
        return {
            **self.meta,
            "lengths": [int(n) for n in self.timing["length"]],
            "seconds": round(float(self.timing["seconds"].sum()), 3),
            "largest_block_bytes": int(self.timing["largest_block_bytes"].max()),
            "message": (
                f"{len(self.timing)} lengths up to {int(longest['length'])} tokens in "
                f"{self.timing['seconds'].sum():.1f} s"
            ),
        }


def long_texts(tokenizer: Any, texts: list[str], *, length: int, count: int) -> list[str]:
    """`count` texts of at least `length` tokens, each made of consecutive source texts joined by
    blank lines (no source text is used twice)."""
    out: list[str] = []
    parts: list[str] = []
    for text in texts:
        parts.append(text)
        joined = "\n\n".join(parts)
        if len(tokenizer(joined, add_special_tokens=False)["input_ids"]) >= length:
            out.append(joined)
            parts = []
            if len(out) == count:
                return out
    raise SubnetScopeError(
        f"the source holds {len(out)} stretch(es) of {length} tokens, fewer than the {count} "
        "asked for; ask for shorter lengths or fewer texts"
    )


def context_stats(
    loaded: LoadedModel,
    texts: list[str],
    lengths: tuple[int, ...],
    *,
    window: int,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """head_stats of `texts` cut to each length: (stats with a `length` column, timing)."""
    report = progress or (lambda fraction, message: None)
    weights = [n * n for n in lengths]  # attention work grows with T²
    done, frames, timing = 0, [], []
    for length, weight in zip(lengths, weights, strict=True):

        def on_text(i: int, n: int, length=length, weight=weight, done=done) -> None:
            fraction = (done + weight * i / n) / sum(weights)
            report(fraction, f"{length} tokens: text {i}/{n}")

        started = time.perf_counter()
        stats = head_stats(loaded, texts, window=window, max_tokens=length, on_text=on_text)
        seconds = time.perf_counter() - started
        if stats.tokens < length * len(texts):
            raise SubnetScopeError(
                f"the texts hold {stats.tokens} tokens, fewer than {len(texts)} × {length}"
            )
        frames.append(stats.frame.assign(length=length))
        timing.append(
            {
                "length": length,
                "seconds": seconds,
                "largest_block_bytes": stats.largest_block_bytes,
                "tokens": stats.tokens,
            }
        )
        done += weight
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[["length", *[c for c in frame.columns if c != "length"]]]
    return frame, pd.DataFrame(timing, columns=TIMING_COLUMNS)


def run_context(
    config: ContextConfig,
    *,
    loaded: LoadedModel | None = None,
    progress: Progress | None = None,
) -> ContextResult:
    """The `attention.context` job's work: load, build the long texts, capture at each length."""
    from engine.data import load_texts
    from engine.models import load_model
    from engine.models.loading import source_config

    report = progress or (lambda fraction, message: None)
    longest = max(config.lengths)
    if loaded is None:
        check_positions(source_config(config.model), longest, config.model)  # before the weights
        report(0.0, f"loading {config.model} ({config.dtype})")
        loaded = load_model(config.model, dtype=config.dtype)
    check_positions(loaded.model.config, longest, loaded.display_name)
    report(0.02, f"reading {config.text}")
    texts = long_texts(
        loaded.tokenizer, load_texts(config.text), length=longest, count=config.texts
    )
    frame, timing = context_stats(
        loaded,
        texts,
        config.lengths,
        window=config.window,
        progress=lambda fraction, message: report(0.05 + 0.95 * fraction, message),
    )
    meta = {
        "model": loaded.source,
        "dtype": str(loaded.dtype).removeprefix("torch."),  # what `dtype` resolved to
        "text": config.text,
        "texts": len(texts),
        "window": config.window,
    }
    return ContextResult(frame, timing, layout_table(loaded.model.config), meta)
