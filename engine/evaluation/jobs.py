"""Job kinds of the evaluation area."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from engine.jobs import JobContext, job
from engine.models.precision import dtype_choice


@job(
    "eval.perplexity",
    title="Sliding-window perplexity",
    result_page="runs",
    defaults={
        "model": "demo",
        "text": "demo-general",
        "max_tokens": 2048,
        "stride": 256,
        "window": 512,
        "mask": None,
        "dtype": "auto",
    },
    mem_gb=1.5,  # measured on the demo model: 1.37 GB peak (VmHWM)
)
def eval_perplexity(params: dict[str, Any], ctx: JobContext) -> dict:
    """Perplexity of a model on a text source (a file, `demo-general`, or a hub dataset)."""
    from engine.data import load_texts
    from engine.evaluation.perplexity import perplexity
    from engine.models import load_model, parse_mask

    dtype = dtype_choice(params.get("dtype"))  # a bad one fails before the model loads
    ctx.progress(0.0, f"loading {params['model']} ({dtype})")
    loaded = load_model(params["model"], dtype=dtype)
    mask = parse_mask(params["mask"]) if params.get("mask") else None
    ctx.progress(0.05, f"reading {params['text']}")
    texts = load_texts(params["text"])
    # Enough characters for max_tokens (≈ 4 chars per token in English, with a margin).
    budget, chosen = int(params["max_tokens"]) * 8, []
    for text in texts:
        chosen.append(text)
        budget -= len(text)
        if budget <= 0:
            break

    def on_window(end: int, total: int) -> None:
        ctx.progress(0.1 + 0.9 * end / total, f"{end}/{total} tokens scored")

    result = perplexity(
        loaded,
        "\n\n".join(chosen),
        max_tokens=int(params["max_tokens"]),
        window=int(params["window"]),
        stride=int(params["stride"]),
        mask=mask,
        on_window=on_window,
    )
    ctx.metric("perplexity", result.perplexity)
    summary = {
        "model": params["model"],
        "text": params["text"],
        "dtype": str(loaded.dtype).removeprefix("torch."),  # what `dtype` resolved to
        **asdict(result),
    }
    ctx.write_json("perplexity.json", summary)
    return summary
