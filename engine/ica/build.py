"""Seed 001's buildtemplates: capture activations over datasets, decompose, save templates."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import engine
from engine.errors import SubnetScopeError
from engine.ica.artifacts import save_arrays
from engine.ica.capture import capture_activations
from engine.ica.config import BuildConfig
from engine.ica.decompose import ICAConfig, run_ica
from engine.ica.templates import (
    SPACE_LABELS,
    Templates,
    templates_from_mixing,
)
from engine.models.layers import parse_layers

Progress = Callable[[float, str], None]


def build_templates(
    config: BuildConfig, out: str | Path, *, progress: Progress | None = None, loaded=None
) -> Templates:
    """Run the whole pipeline and write `out` (JSON) with its arrays beside it."""
    from engine.data import load_texts
    from engine.models import load_model

    report = progress or (lambda fraction, message: None)
    out = Path(out)
    if out.suffix != ".json":
        raise SubnetScopeError(f"the templates file must end in .json, not '{out.name}'")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report(0.0, f"loading {config.model}")
    loaded = loaded or load_model(config.model)
    arch = loaded.architecture
    layers = parse_layers(config.layers, arch.num_layers)
    texts: list[str] = []
    text_dataset: list[int] = []
    counts = {}
    for i, name in enumerate(config.datasets):
        report(0.02, f"reading {name}")
        chosen = load_texts(name, limit=config.samples_per_ds, seed=config.seed)
        texts += chosen
        text_dataset += [i] * len(chosen)
        counts[name] = len(chosen)
    spill = out.parent / f".{out.stem}.spill"
    try:
        acts = capture_activations(
            loaded,
            texts,
            layers,
            datasets=list(config.datasets),
            text_dataset=text_dataset,
            max_length=config.max_length,
            batch_size=config.batch_size,
            memory_budget=int(config.memory_budget_gb * 2**30),
            spill_dir=spill,
            space=config.space,
            on_batch=lambda done, total: report(
                0.05 + 0.5 * done / total, f"captured {done}/{total} texts"
            ),
        )
        features = f"{acts.matrix.shape[1]} {config.space} features"
        report(0.6, f"ICA on [{acts.num_tokens} tokens × {features}]")
        ica_config = ICAConfig(
            n_components=config.components,
            pca=config.pca if config.pca == "auto" else int(config.pca),
            seed=config.seed,
            memory_budget=int(config.memory_budget_gb * 2**30),
            standardize=config.standardize,
        )
        result = run_ica(acts.matrix, ica_config)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    report(0.9, "selecting key neurons")
    metadata = {
        "space": config.space,
        "space_label": SPACE_LABELS[config.space],
        "model": config.model,
        "model_name": loaded.display_name,
        "family": arch.family,
        "model_type": arch.model_type,
        "num_layers": arch.num_layers,
        "neurons_per_layer": list(arch.neurons_per_layer),
        "hidden_size": arch.hidden_size,
        "layers": list(layers),
        "datasets": list(config.datasets),
        "samples_per_dataset": config.samples_per_ds,
        "texts_per_dataset": counts,
        "tokens": acts.num_tokens,
        "max_length": config.max_length,
        "components": config.components,
        "threshold": config.threshold,
        "percentile": config.percentile,
        "standardized": config.standardize,
        "pca_dims": result.pca_dims,
        "explained_variance": result.explained_variance,
        "ica_iterations": result.n_iter,
        "notes": result.notes,
        "seed": config.seed,
        "spilled_to_disk": acts.spilled_to is not None,
        "seconds": round(time.monotonic() - started, 2),
        "engine_version": engine.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    templates = templates_from_mixing(
        result.mixing,
        layers,
        acts.widths,
        threshold=config.threshold,
        percentile=config.percentile,
        metadata=metadata,
    )
    templates.metadata["key_neurons"] = {str(c): templates.size(c) for c in templates.component_ids}
    save_arrays(out, result, acts)
    templates.save(out)  # last: a reader that sees the JSON finds its arrays
    report(1.0, f"{config.components} components over {acts.num_tokens} tokens")
    return templates


def key_neuron_share(templates: Templates) -> float:
    """Fraction of the covered channels (in the templates' space) key in at least one component."""
    widths = templates.layer_widths()
    if not widths:
        return float("nan")
    covered = sum(widths[layer] for layer in templates.layers)
    union = {pair for c in templates.component_ids for pair in templates.neurons(c)}
    return len(union) / covered if covered else float(np.nan)
