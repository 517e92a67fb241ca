"""Attention statistics (issue 21): `engine.attention.head_stats` against a plain forward pass with
`output_attentions=True` that reduces the returned maps to the same four statistics.

Both sides read one text of `tokens` tokens (default 1024, the demo corpus joined) on the demo
model in fp32, one core. The baseline loads the model the same way, switches it to eager attention
(the only implementation that returns maps), runs one forward with `output_attentions=True` and
computes entropy, mean distance, window share and first-token mass per head from the maps it
returned (all layers' (heads, T, T) maps are alive at once: the O(layers · T²) cost the capture
avoids). `head_stats` keeps the model's own attention (sdpa) and recomputes each layer's rows in
blocks of at most 64 MiB of scores. Both forwards skip the (T, vocab) logits (`logits_to_keep=1`),
so the difference is the attention capture alone. Each side runs in a fresh process: one warm-up
pass, then `repeats` timed passes; peak memory = VmHWM over the timed passes minus the resident
memory before them (the model and the warm-up's leftovers excluded). The two sides' statistics
must agree (max |Δ| in the details).

Quick mode (tests/test_benchmarks.py): `SUBNETSCOPE_BENCH_ATTENTION_MODEL` (a model folder) and
`SUBNETSCOPE_BENCH_ATTENTION_TOKENS` pick another model and length.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from benchmarks.runner import Result, benchmark, compare, json_child

MODEL_ENV, TOKENS_ENV = "SUBNETSCOPE_BENCH_ATTENTION_MODEL", "SUBNETSCOPE_BENCH_ATTENTION_TOKENS"
TOKENS = 1024
WINDOW = 32
TIMEOUT = 900


def _ids(loaded, tokens: int):
    from engine.attention.context import long_texts
    from engine.data import load_texts

    text = long_texts(loaded.tokenizer, load_texts("demo-general"), length=tokens, count=1)[0]
    return text, loaded.tokenizer(text, return_tensors="pt")["input_ids"][:, :tokens]


def _from_maps(attentions, window: int) -> list[list[list[float]]]:
    """[layer][head][stat] from the returned (1, heads, T, T) maps: rows 1..T-1 averaged."""
    import torch

    out = []
    for probs in attentions:
        p = probs[0, :, 1:].float()  # (heads, T-1, T): query positions 1..T-1
        t = p.shape[-1]
        distance = (torch.arange(1, t)[:, None] - torch.arange(t)[None, :]).float()  # (T-1, T)
        entropy = -torch.special.xlogy(p, p).sum(-1)
        stats = [entropy, (p * distance).sum(-1), (p * (distance < window)).sum(-1), p[..., 0]]
        out.append(torch.stack([s.mean(-1) for s in stats], dim=-1).tolist())  # (heads, 4)
    return out


def _child(mode: str, source: str, tokens: int, repeats: int) -> dict[str, Any]:
    import torch

    from benchmarks.scale import reset_peak, status_mb
    from engine.attention.capture import STATS, head_stats
    from engine.models import load_model

    loaded = load_model(source, dtype="fp32")
    text, ids = _ids(loaded, tokens)
    if mode == "eager":
        loaded.model.set_attn_implementation("eager")

    def run() -> list[list[list[float]]]:
        if mode == "stats":
            frame = head_stats(loaded, [text], window=WINDOW, max_tokens=tokens).frame
            layers = sorted(frame["layer"].unique())
            return [frame[frame["layer"] == i][list(STATS)].to_numpy().tolist() for i in layers]
        with torch.inference_mode():
            out = loaded.model(
                input_ids=ids, use_cache=False, output_attentions=True, logits_to_keep=1
            )
            return _from_maps(out.attentions, WINDOW)

    stats = run()  # warm-up
    before = status_mb("VmRSS")
    reset_peak()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        stats = run()
        samples.append(time.perf_counter() - started)
    return {
        "samples": samples,
        "peak_growth_mb": status_mb("VmHWM") - before,
        "stats": stats,
        "tokens": int(ids.shape[1]),
        "implementation": loaded.model.config._attn_implementation,
    }


@benchmark("attention_capture", repeats=3)
def attention_capture(repeats: int) -> list[Result]:
    """Seconds and peak memory of head_stats against a forward with output_attentions=True."""
    from engine.errors import SubnetScopeError

    source = os.environ.get(MODEL_ENV, "demo")
    tokens = int(os.environ.get(TOKENS_ENV, TOKENS))
    if source == "demo":
        from engine.models.demo import demo_is_ready

        if not demo_is_ready():
            print("attention_capture skipped: the demo model is not prepared", file=sys.stderr)
            return []
    runs = {}
    for mode in ("stats", "eager"):
        try:
            runs[mode] = json_child(
                ["benchmarks.attention_capture", json.dumps([mode, source, tokens, repeats])],
                f"attention_capture {mode}",
                TIMEOUT,
                TRANSFORMERS_VERBOSITY="error",
            )
        except RuntimeError as exc:
            raise SubnetScopeError(str(exc)[-500:]) from None
    ours, base = runs["stats"], runs["eager"]
    diff = max(
        abs(a - b)
        for la, lb in zip(ours["stats"], base["stats"], strict=True)
        for ha, hb in zip(la, lb, strict=True)
        for a, b in zip(ha, hb, strict=True)
    )
    details = {
        "model": source,
        "tokens": ours["tokens"],
        "window": WINDOW,
        "implementations": {"head_stats": ours["implementation"], "baseline": "eager"},
        "max_abs_stat_diff": diff,
        "threads": "torch 1 thread, BLAS 1 thread, each side in a fresh process",
    }
    baseline = "forward with output_attentions=True (eager) + the same statistics from its maps"
    return [
        compare(
            "attention_capture.seconds",
            "head_stats seconds per text",
            ours["samples"],
            baseline,
            base["samples"],
            details=details,
        ),
        Result(
            name="attention_capture.peak_memory",
            metric="peak memory growth during the passes",
            value=ours["peak_growth_mb"],
            unit="MB",
            repeats=repeats,
            baseline=baseline,
            baseline_value=base["peak_growth_mb"],
            ratio=ours["peak_growth_mb"] / base["peak_growth_mb"]
            if base["peak_growth_mb"]
            else None,
            details=details,
        ),
    ]


if __name__ == "__main__":
    # Child mode: python -m benchmarks.attention_capture '<json [mode, source, tokens, repeats]>'
    from engine.runtime import limit_threads

    limit_threads(1)
    print(json.dumps(_child(*json.loads(sys.argv[1]))))
