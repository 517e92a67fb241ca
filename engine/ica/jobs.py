"""Job kind `ica.build_templates` (seed 001's buildtemplates) and the demo's templates."""

from __future__ import annotations

from typing import Any

from engine.ica.config import BuildConfig
from engine.jobs import JobContext, job
from engine.models.precision import dtype_choice

TEMPLATES_FILE = "templates.json"


@job(
    "ica.build_templates",
    title="ICA templates: functional networks of MLP neurons",
    result_page="ica",
    defaults={**BuildConfig().to_params(), "dtype": "auto"},
    mem_gb=8.0,  # measured on the demo model: 6.49 GB peak (VmHWM)
)
def build_templates_job(params: dict[str, Any], ctx: JobContext) -> dict:
    """Capture activations over the datasets, PCA + FastICA, key neurons per component."""
    from engine.ica.build import build_templates
    from engine.models import load_model

    params = dict(params)
    dtype = dtype_choice(params.pop("dtype", None))
    config = BuildConfig.from_params(params)
    ctx.progress(0.0, f"loading {config.model} ({dtype})")
    loaded = load_model(config.model, dtype=dtype)
    templates = build_templates(
        config, ctx.result_path(TEMPLATES_FILE), progress=ctx.progress, loaded=loaded
    )
    meta = templates.metadata
    ctx.metric("tokens", meta["tokens"])
    if meta.get("explained_variance") is not None:
        ctx.metric("pca_explained_variance", meta["explained_variance"])
    return {
        "templates": str(templates.path),
        "dtype": str(loaded.dtype).removeprefix("torch."),  # what `dtype` resolved to
        "space": templates.space,
        "standardized": meta["standardized"],
        "components": meta["components"],
        "tokens": meta["tokens"],
        "layers": len(meta["layers"]),
        "pca_dims": meta["pca_dims"],
        "seconds": meta["seconds"],
    }
