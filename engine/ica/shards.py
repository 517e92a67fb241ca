"""`ica.capture`: the activations ICA decomposes, captured over the texts; split, over text shards.

The job writes `activations.npy` (tokens × features, float32, the layers side by side as in
engine.ica.capture), `tokens.parquet` (text_index, position, token_id per row) and
`capture.json` (layers, widths, space, texts and their datasets). Split into shards, each shard
captures a consecutive range of the texts, cut at multiples of `batch_size` so that every
forward pass sees the batch the unsplit job would; the reduce concatenates the rows in text
order. Both give the same files with the same numbers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from engine.ica.config import BuildConfig
from engine.jobs import JobContext, job, splits

KIND = "ica.capture"
ACTIVATIONS = "activations.npy"
TOKENS = "tokens.parquet"
CAPTURE = "capture.json"
_RANGE = "text_range"
# The options of ica.build_templates that decide what is captured (the rest decompose it).
CAPTURE_OPTIONS = (
    "model",
    "datasets",
    "samples_per_ds",
    "layers",
    "max_length",
    "space",
    "seed",
    "memory_budget_gb",
    "batch_size",
)  # a shard's [start, stop) of the texts, set by the plan


def _config(params: dict[str, Any]) -> tuple[BuildConfig, str]:
    from engine.models.precision import dtype_choice

    params = {k: v for k, v in params.items() if k != _RANGE}
    dtype = dtype_choice(params.pop("dtype", None))
    return BuildConfig.from_params(params), dtype


def _texts(config: BuildConfig) -> tuple[list[str], list[int]]:
    """The texts ica.build_templates reads: `samples_per_ds` drawn from each dataset."""
    from engine.data import load_texts

    texts: list[str] = []
    text_dataset: list[int] = []
    for i, name in enumerate(config.datasets):
        chosen = load_texts(name, limit=config.samples_per_ds, seed=config.seed)
        texts += chosen
        text_dataset += [i] * len(chosen)
    return texts, text_dataset


def _save_matrix(path: Path, matrix) -> None:
    import numpy as np

    if isinstance(matrix, np.memmap) and matrix.filename:
        matrix.flush()
        os.replace(matrix.filename, path)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, matrix)
    os.replace(tmp, path)


@job(
    KIND,
    title="ICA capture: MLP activations over the texts",
    result_page="ica",
    defaults={
        **{k: v for k, v in BuildConfig().to_params().items() if k in CAPTURE_OPTIONS},
        "dtype": "auto",
    },
    mem_gb=6.0,  # not measured: ica.build_templates' 6.49 GB peak less its PCA + FastICA copies
)
def capture_job(params: dict[str, Any], ctx: JobContext) -> dict:
    """Capture the activations of every token of the texts (a shard: of its range of them)."""
    import pandas as pd

    from engine.ica.capture import capture_activations
    from engine.models import load_model
    from engine.models.layers import parse_layers

    config, dtype = _config(params)
    texts, text_dataset = _texts(config)
    start, stop = params.get(_RANGE) or (0, len(texts))
    ctx.progress(0.0, f"loading {config.model} ({dtype})")
    loaded = load_model(config.model, dtype=dtype)
    layers = parse_layers(config.layers, loaded.architecture.num_layers)
    spill = ctx.result_dir / ".spill"
    acts = capture_activations(
        loaded,
        texts[start:stop],
        layers,
        datasets=list(config.datasets),
        text_dataset=text_dataset[start:stop],
        max_length=config.max_length,
        batch_size=config.batch_size,
        memory_budget=int(config.memory_budget_gb * 2**30),
        spill_dir=spill,
        space=config.space,
        on_batch=lambda done, total: ctx.progress(0.05 + 0.9 * done / total, f"{done}/{total}"),
    )
    _save_matrix(ctx.result_path(ACTIVATIONS), acts.matrix)
    shutil.rmtree(spill, ignore_errors=True)
    tokens = pd.DataFrame(
        {
            "text_index": acts.text_index + start,
            "position": acts.position,
            "token_id": acts.token_ids,
        }
    )
    ctx.write_table(TOKENS, tokens)
    meta = {
        "model": config.model,
        "space": acts.space,
        "layers": list(acts.layers),
        "widths": list(acts.widths),
        "datasets": acts.datasets,
        "text_range": [start, stop],
        "texts": acts.texts,
        "text_dataset": acts.text_dataset.tolist(),
        "tokens": acts.num_tokens,
    }
    ctx.write_json(CAPTURE, meta)
    return {"tokens": acts.num_tokens, "features": int(acts.matrix.shape[1]), "texts": stop - start}


def plan(params: dict[str, Any], wanted: int) -> list[dict[str, Any]]:
    """Consecutive ranges of the texts, whole batches each, at most `wanted` shards."""
    config, _ = _config(params)
    total = len(_texts(config)[0])
    batches = -(-total // config.batch_size)
    per_shard = -(-batches // min(wanted, max(1, batches))) * config.batch_size
    return [
        {**params, _RANGE: [start, min(start + per_shard, total)]}
        for start in range(0, total, per_shard)
    ]


def reduce(params: dict[str, Any], shard_results: list[Path], ctx: JobContext) -> dict:
    """The shards' rows one after another (their ranges follow the text order)."""
    import numpy as np
    import pandas as pd

    from engine.jobs.files import read_json

    metas = [read_json(result / CAPTURE) for result in shard_results]
    rows = sum(m["tokens"] for m in metas)
    width = sum(metas[0]["widths"])
    out = ctx.result_path(ACTIVATIONS)
    tmp = out.with_name(f".{out.name}.tmp")
    matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, width))
    row = 0
    for i, result in enumerate(shard_results):
        part = np.load(result / ACTIVATIONS, mmap_mode="r")
        matrix[row : row + part.shape[0]] = part
        row += part.shape[0]
        ctx.progress(0.9 + 0.09 * (i + 1) / len(shard_results), f"shard {i + 1} concatenated")
    matrix.flush()
    del matrix
    os.replace(tmp, out)
    tokens = pd.concat([pd.read_parquet(r / TOKENS) for r in shard_results], ignore_index=True)
    ctx.write_table(TOKENS, tokens)
    meta = {
        **metas[0],
        "text_range": [metas[0]["text_range"][0], metas[-1]["text_range"][1]],
        "texts": [t for m in metas for t in m["texts"]],
        "text_dataset": [d for m in metas for d in m["text_dataset"]],
        "tokens": rows,
    }
    ctx.write_json(CAPTURE, meta)
    return {"tokens": rows, "features": width, "texts": len(meta["texts"])}


splits(KIND, plan=plan, reduce=reduce)(capture_job)
