"""Masked LoRA SFT (seed 001's fnsft): ICA lesion / preserve hooks during training, anti-drift
row parametrization, and the new-task and forgetting scores before and after.

The mask acts in the templates file's neuron space: on the down projection's input
(`mlp_neurons`) or on its output (`mlp_out`, seed 001's reference); anti-drift holds the weights
that carry the masked channels of that space.

The run writes `adapter/` (a PEFT folder; `model/` for full SFT) and `run.json` with
task and general perplexity before and after, so runs of a three-way comparison line up.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import torch

from engine.atomic import atomic_dir
from engine.errors import SubnetScopeError
from engine.jobs import JobContext
from engine.models.devices import input_device
from engine.training.callback import JobProgress, diagnostics_callbacks
from engine.training.config import MaskedSFTConfig

RUN_JSON = "run.json"


def _split(config: MaskedSFTConfig, tokenizer) -> tuple[list[str], list[str]]:
    from engine.data.formats import format_example, load_records, to_examples

    examples = to_examples(load_records(config.dataset, limit=config.limit, seed=config.seed))
    if len(examples) <= config.eval_examples:
        raise SubnetScopeError(
            f"'{config.dataset}' has {len(examples)} examples; more than eval_examples "
            f"({config.eval_examples}) are needed to train on the rest"
        )
    order = np.random.default_rng(config.seed).permutation(len(examples))
    texts = [format_example(examples[i], config.template, tokenizer) for i in order]
    return texts[config.eval_examples :], texts[: config.eval_examples]


def _scores(model, tokenizer, task: list[str], general: list[str], max_length: int) -> dict:
    from engine.evaluation.perplexity import texts_perplexity

    return {
        "task_ppl": texts_perplexity(model, tokenizer, task, max_length=max_length).perplexity,
        "general_ppl": texts_perplexity(
            model, tokenizer, general, max_length=max_length
        ).perplexity,
    }


def _mask(config: MaskedSFTConfig, architecture, ctx: JobContext):
    if config.mask_mode is None:
        return None, None
    from engine.ica import ica_mask, load_templates
    from engine.ica.catalog import resolve_templates

    templates = load_templates(resolve_templates(config.ica_templates), space=config.ica_space)
    templates.validate(architecture, config.model)
    mask = ica_mask(templates, config.ica_component_ids, config.mask_mode)
    ctx.log(
        f"{config.mask_mode} mask from {templates.path} ({templates.space}): components "
        f"{config.ica_component_ids}"
    )
    return mask, str(templates.path)


def run_sft_masked(config: MaskedSFTConfig, ctx: JobContext) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from engine.data import load_texts
    from engine.ica import active_neurons, apply_space_mask
    from engine.ica.masks import switched_off
    from engine.models import LoadedModel, detect_architecture
    from engine.training.anti_drift import apply_anti_drift, drift, remove_anti_drift
    from engine.training.runs import _common_args, _load, _peft_config

    started = time.monotonic()
    model, tokenizer = _load(config, ctx)
    architecture = detect_architecture(model)
    mask, templates_path = _mask(config, architecture, ctx)
    train_texts, task_texts = _split(config, tokenizer)
    general = load_texts(config.eval_general, limit=config.eval_general_texts, seed=config.seed)
    ctx.progress(0.05, "scoring the base model")
    before = _scores(model, tokenizer, task_texts, general, config.max_length)
    for name, value in before.items():
        ctx.metric(name, value, step=0)

    args = SFTConfig(
        **_common_args(config, ctx.job_dir / "trainer"),
        max_length=config.max_length,
        dataset_text_field="text",
        packing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": train_texts}),
        processing_class=tokenizer,
        callbacks=[
            JobProgress(ctx, config.steps, start=0.15, span=0.7),
            *diagnostics_callbacks(
                config, ctx, tokenizer=tokenizer, train=train_texts, heldout=task_texts
            ),
        ],
        peft_config=_peft_config(config),
    )
    trained = trainer.model  # a PeftModel with LoRA
    base = trained.get_base_model() if hasattr(trained, "get_base_model") else trained
    anti_drift = None
    if mask is not None and config.anti_drift_row_param:
        report = apply_anti_drift(
            trained,
            architecture,
            active_neurons(mask, architecture),
            config.anti_drift_apply_to,
            space=mask.space,
        )
        anti_drift = asdict(report)
        ctx.log(f"anti-drift on {len(report.parametrized)} tensors")
    # The hooks go on the modules at the down-projection paths of the model being trained (with
    # LoRA, the LoRA layer), so base and adapter paths both see the masked channels.
    view = LoadedModel(
        source=config.model,
        display_name=config.model,
        model=base,
        tokenizer=tokenizer,
        architecture=architecture,
        device=input_device(base),
        dtype=torch.float32,
        is_causal_lm=True,
    )
    ctx.progress(0.15, "training")
    with apply_space_mask(view, mask) if mask is not None else nullcontext():
        trainer.train()
    if anti_drift is not None:
        anti_drift["max_drift"] = drift(trained)
        ctx.metric("anti_drift/max_drift", anti_drift["max_drift"])
        remove_anti_drift(trained, bake=config.anti_drift_bake)
    ctx.progress(0.88, "scoring the tuned model")
    after = _scores(trained, tokenizer, task_texts, general, config.max_length)
    for name, value in after.items():
        ctx.metric(name, value, step=config.steps)
    out = ctx.result_dir / ("adapter" if config.lora else "model")
    with atomic_dir(out) as tmp:
        trained.save_pretrained(str(tmp), safe_serialization=True)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    summary = {
        "kind": "sft_masked",
        "group": config.group,
        "mask_mode": config.mask_mode or "none",
        "space": mask.space if mask is not None else None,
        "components": list(config.ica_component_ids) if mask is not None else [],
        "templates": templates_path,
        "masked_neurons": switched_off(mask, architecture),
        "anti_drift": anti_drift,
        "before": before,
        "after": after,
        "task_gain": before["task_ppl"] / after["task_ppl"],
        "forgetting": after["general_ppl"] / before["general_ppl"] - 1.0,
        "final_loss": losses[-1] if losses else None,
        "steps": config.steps,
        "seconds": round(time.monotonic() - started, 2),
        "output": str(out),
        "config": config.to_params(),
    }
    ctx.write_json(RUN_JSON, summary)
    ctx.progress(1.0, f"task ppl {before['task_ppl']:.3g} → {after['task_ppl']:.3g}")
    return {
        k: summary[k]
        for k in (
            "group",
            "mask_mode",
            "before",
            "after",
            "task_gain",
            "forgetting",
            "masked_neurons",
            "output",
        )
    }
