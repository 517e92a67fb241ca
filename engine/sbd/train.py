"""The `sbd.train` job: fine-tune a model for Set Block Decoding, save it, and decode with it.

Writes `result/model/` (the model and its tokenizer, which holds the new mask token),
`checkpoint-<step>/` when asked, `run.json` (losses, held-out perplexity before and after, the
config), and the decoding evaluation of engine/sbd/evaluate.py on the held-out examples.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from engine.atomic import atomic_dir
from engine.data.formats import Example
from engine.errors import SubnetScopeError
from engine.jobs import JobContext
from engine.models.loading import LoadedModel, wrap_model
from engine.models.sbd_masks import SBD_MASK_TOKEN
from engine.sbd.config import (
    MODEL_DIR,
    RUN_JSON,
    SBDConfig,
    block_range,
)
from engine.sbd.objective import encode, prompt_lengths, sbd_batch, sbd_loss


def add_mask_token(model: torch.nn.Module, tokenizer) -> int:
    """Add the SBD mask token to the tokenizer and, where its id is past the embedding table,
    grow the table (transformers initializes the new row from the old rows' mean)."""
    tokenizer.add_special_tokens({"additional_special_tokens": [SBD_MASK_TOKEN]})
    mask_id = int(tokenizer.convert_tokens_to_ids(SBD_MASK_TOKEN))
    rows = model.get_input_embeddings().weight.shape[0]
    if mask_id >= rows:
        model.resize_token_embeddings(mask_id + 1)
    return mask_id


def split_examples(config: SBDConfig, tokenizer) -> tuple[list[str], list[Example]]:
    """(training texts, held-out examples), shuffled by seed: instruction records rendered in the
    run's template, or plain texts as text-only examples."""
    train, heldout = _split(config, tokenizer)
    return [render(e, config.template, tokenizer) for e in train], heldout


def _split(config: SBDConfig, tokenizer) -> tuple[list[Example], list[Example]]:
    from engine.training.lora_runs import _records_source

    if _records_source(config.dataset, config.text_field):
        from engine.data.formats import load_records, to_examples

        examples = to_examples(load_records(config.dataset, limit=config.limit, seed=config.seed))
    else:
        from engine.data import load_texts

        texts = load_texts(
            config.dataset, text_field=config.text_field, limit=config.limit, seed=config.seed
        )
        examples = [Example(text=t) for t in texts if t.strip()]
    if len(examples) <= config.eval_texts:
        raise SubnetScopeError(
            f"'{config.dataset}' has {len(examples)} examples; more than eval_texts "
            f"({config.eval_texts}) are needed to train on the rest"
        )
    order = np.random.default_rng(config.seed).permutation(len(examples))
    examples = [examples[i] for i in order]
    heldout, train = examples[: config.eval_texts], examples[config.eval_texts :]
    seen = {render(e, config.template, tokenizer) for e in train}
    # A held-out example that is also a training text measures nothing.
    return train, [e for e in heldout if render(e, config.template, tokenizer) not in seen]


def render(example: Example, template: str, tokenizer) -> str:
    from engine.data.formats import format_example

    return format_example(example, template, tokenizer)


def _batches(sequences: list[list[int]], batch_size: int, seed: int):
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(sequences))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield [sequences[i] for i in order[start : start + batch_size]]
        if len(sequences) < batch_size:
            yield [sequences[i] for i in order]


def _with_lora(config: SBDConfig, loaded: LoadedModel, mask_id: int) -> LoadedModel:
    from peft import LoraConfig, get_peft_model

    from engine.training.config import target_list

    peft_config = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=target_list(config.target_modules),
        trainable_token_indices=[mask_id],
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(loaded.model, peft_config)
    except ValueError as exc:
        raise SubnetScopeError(
            f"target_modules '{config.target_modules}' do not fit {config.model}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    return dataclasses.replace(loaded, model=model)


def _save(model: torch.nn.Module, tokenizer, target) -> None:
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))


def run_sbd(config: SBDConfig, ctx: JobContext) -> dict:
    from engine.training.diagnostics import loop_diagnostics
    from engine.training.lora_runs import perplexity
    from engine.training.runs import _load

    started = time.monotonic()
    model, tokenizer = _load(config, ctx)
    if config.eval_examples:  # now, so the job runs the code it started with to the end
        from engine.sbd.evaluate import evaluate_finished_run
    train, heldout = _split(config, tokenizer)
    train_texts = [render(e, config.template, tokenizer) for e in train]
    heldout_texts = [render(e, config.template, tokenizer) for e in heldout]
    ctx.progress(0.03, "scoring the base model")
    model.eval()
    before = perplexity(model, tokenizer, heldout_texts, config.max_length)
    ctx.metric("heldout_ppl", before, step=0)
    mask_id = add_mask_token(model, tokenizer)
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise SubnetScopeError(f"{config.model}'s tokenizer has no end-of-sequence token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    loaded = wrap_model(model, tokenizer, source=config.model)
    if config.lora:
        loaded = _with_lora(config, loaded, mask_id)
    trained = loaded.model
    trained.train()
    trainable = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    warmup = max(int(config.warmup_steps), 0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
    )
    sequences = encode(train_texts, tokenizer, config.max_length, eos_id)
    starts = None
    if config.completion_only:
        from engine.data.formats import format_prompt

        prompts = [format_prompt(e, config.template, tokenizer) for e in train]
        starts = prompt_lengths(sequences, prompts, tokenizer)
    batches = _batches(
        list(zip(sequences, starts or [0] * len(sequences), strict=True)),
        config.batch_size,
        config.seed,
    )
    generator = torch.Generator().manual_seed(config.seed)
    low, high = block_range(config.block_sizes)
    blocks = np.random.default_rng(config.seed + 1)
    diagnostics = loop_diagnostics(
        config, ctx, trained, tokenizer=tokenizer, train=train_texts, heldout=heldout_texts
    )
    losses = []
    ctx.progress(0.06, "training")
    for step in range(1, config.steps + 1):
        block = int(blocks.integers(low, high + 1))
        chunk = next(batches)
        batch = sbd_batch(
            [seq for seq, _ in chunk],
            pad_id=pad_id,
            mask_id=mask_id,
            block=block,
            generator=generator,
            starts=[start for _, start in chunk],
        )
        diagnostics.before_step(step)
        result = sbd_loss(loaded, batch)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        diagnostics.after_step(step)
        loss = float(result.loss.detach())
        row = {"step": step, "loss": loss, "ntp": result.ntp, "masked": result.masked}
        losses.append(row | {"block": block})
        ctx.metric("train/loss", loss, step=step)
        ctx.metric("train/ntp_loss", result.ntp, step=step)
        if not math.isnan(result.masked):
            ctx.metric("train/masked_loss", result.masked, step=step)
        if config.checkpoint_every and step % config.checkpoint_every == 0 < config.steps - step:
            _save(trained, tokenizer, ctx.result_dir / f"checkpoint-{step}")
        ctx.progress(0.06 + 0.64 * step / config.steps, f"step {step}/{config.steps}")
    diagnostics.close()
    trained.eval()
    if config.lora:
        trained = trained.merge_and_unload()
    loaded = dataclasses.replace(loaded, model=trained)
    ctx.progress(0.71, "scoring the trained model")
    after = perplexity(trained, tokenizer, heldout_texts, config.max_length)
    ctx.metric("heldout_ppl", after, step=config.steps)
    out = ctx.result_dir / MODEL_DIR
    _save(trained, tokenizer, out)
    summary = {
        "kind": "sbd",
        "model_dir": str(out),
        "model": config.model,
        "dataset": config.dataset,
        "template": config.template,
        "block_sizes": list(block_range(config.block_sizes)),
        "mask_token": SBD_MASK_TOKEN,
        "mask_token_id": mask_id,
        "train_texts": len(train_texts),
        "heldout_texts": len(heldout_texts),
        "before": {"heldout_ppl": before},
        "after": {"heldout_ppl": after},
        "losses": losses,
        "final_loss": losses[-1]["loss"] if losses else None,
        "steps": config.steps,
        "train_seconds": round(time.monotonic() - started, 2),
        "config": config.to_params(),
    }
    ctx.write_json(RUN_JSON, summary)
    evaluation = None
    if config.eval_examples:
        examples = heldout[: config.eval_examples]
        evaluation = evaluate_finished_run(config, ctx, loaded, examples)
    ctx.progress(1.0, f"held-out ppl {before:.3g} → {after:.3g}")
    keys = ("kind", "model_dir", "model", "dataset", "before", "after", "final_loss")
    return {k: summary[k] for k in keys} | {"evaluation": evaluation}
