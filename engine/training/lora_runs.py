"""Task-adapter LoRA SFT (PEFT + trl.SFTTrainer) and the data the low-rank runs share.

`train.lora` writes `adapter/` (a PEFT folder whose base_model_name_or_path is the model source
as given, e.g. 'demo'), `run.json` (losses, held-out perplexity before and after, the config)
and `rank_evolution.parquet` (rank of the adapter's update B @ A per module over steps).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from engine.atomic import atomic_dir
from engine.errors import SubnetScopeError
from engine.jobs import JobContext
from engine.lora.lowrank import Factors
from engine.training.callback import JobProgress, diagnostics_callbacks
from engine.training.config import LoRARunConfig, LowRankConfig, target_list
from engine.training.rank_tracking import RANK_TABLE, RankTracker, subspace_tracker

RUN_JSON = "run.json"
ADAPTER = "adapter"
PEFT_PREFIX = "base_model.model."


def _records_source(source: str, text_field: str | None) -> bool:
    from engine.data.formats import BUILTIN_RECORDS

    if source in BUILTIN_RECORDS:
        return True
    path = Path(source).expanduser()
    suffixes = (".json", ".jsonl", ".parquet")
    return path.is_file() and text_field is None and path.suffix.lower() in suffixes


def load_training_texts(config: LowRankConfig, tokenizer) -> tuple[list[str], list[str]]:
    """(train, held-out) texts of the run's source: plain texts via engine.data.load_texts, or
    instruction records via engine.data.formats rendered in `template`; shuffled by seed."""
    from engine.data import load_texts

    texts = None
    if _records_source(config.dataset, config.text_field):
        from engine.data.formats import format_example, load_records, to_examples

        try:
            examples = to_examples(
                load_records(config.dataset, limit=config.limit, seed=config.seed)
            )
            texts = [format_example(e, config.template, tokenizer) for e in examples]
        except SubnetScopeError:
            if config.dataset.endswith(".json"):
                raise
            texts = None  # a .jsonl / .parquet of plain texts: load_texts finds the field
    if texts is None:
        texts = load_texts(
            config.dataset, text_field=config.text_field, limit=config.limit, seed=config.seed
        )
    texts = [t for t in texts if t.strip()]
    if len(texts) <= config.eval_texts:
        raise SubnetScopeError(
            f"'{config.dataset}' has {len(texts)} texts; more than eval_texts "
            f"({config.eval_texts}) are needed to train on the rest"
        )
    order = np.random.default_rng(config.seed).permutation(len(texts))
    texts = [texts[i] for i in order]
    return texts[config.eval_texts :], texts[: config.eval_texts]


def perplexity(model: nn.Module, tokenizer, texts: list[str], max_length: int) -> float:
    """Held-out perplexity (each text scored on its own)."""
    from engine.evaluation.perplexity import texts_perplexity

    return float(texts_perplexity(model, tokenizer, texts, max_length=max_length).perplexity)


def peft_factors(model: nn.Module, adapter: str = "default") -> dict[str, Factors]:
    """The live LoRA factors of a PeftModel, by module path of the plain model:
    B (out, r), A (r, in), scale = PEFT's scaling."""
    out = {}
    for name, module in model.named_modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if lora_a is None or lora_b is None or adapter not in lora_a:
            continue
        path = name.removeprefix(PEFT_PREFIX)
        b = lora_b[adapter].weight.detach().float().cpu()  # (out, r)
        a = lora_a[adapter].weight.detach().float().cpu()  # (r, in)
        out[path] = Factors(b, a, float(module.scaling[adapter]))
    return out


def _set_base_model(adapter: Path, source: str) -> None:
    """Record the model source as given ('demo', a folder, a hub id) as the adapter's base.

    Done after saving (into the adapter's temp folder, before it is published): PEFT's save looks
    the base up (to check the embeddings), which must see the resolved local folder, not a name
    like 'demo'."""
    path = adapter / "adapter_config.json"
    data = json.loads(path.read_text())
    data["base_model_name_or_path"] = source
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def lora_config(config: LoRARunConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.dropout,
        target_modules=target_list(config.target_modules),
        use_rslora=config.use_rslora,
        task_type="CAUSAL_LM",
    )


class _LoRAProgress(JobProgress):
    """JobProgress plus the adapter's rank every `rank_every` steps."""

    def __init__(self, ctx: JobContext, config: LoRARunConfig, tracker: RankTracker) -> None:
        super().__init__(ctx, config.steps, start=0.1, span=0.75)
        self.every, self.tracker = config.rank_every, tracker

    def at_step(self, step: int) -> None:
        if self.model is not None and (step % self.every == 0 or step == self.total_steps):
            self.tracker.record_factors(step, peft_factors(self.model))


@dataclass
class Setup:
    """What every low-rank run has once the model is loaded and the base is scored."""

    model: nn.Module
    tokenizer: object
    train: list[str]
    heldout: list[str]
    before: float
    started: float


def setup(config: LowRankConfig, ctx: JobContext) -> Setup:
    """Load the model and the texts, and score the base on the held-out ones."""
    from engine.training.runs import _load

    started = time.monotonic()
    model, tokenizer = _load(config, ctx)
    train, heldout = load_training_texts(config, tokenizer)
    ctx.progress(0.04, "scoring the base model")
    before = perplexity(model, tokenizer, heldout, config.max_length)
    ctx.metric("heldout_ppl", before, step=0)
    return Setup(model, tokenizer, train, heldout, before, started)


def run_lora(config: LoRARunConfig, ctx: JobContext) -> dict:
    """Train a task adapter; see the module docstring for what lands in the result folder."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from engine.training.runs import _common_args

    run = setup(config, ctx)
    model, tokenizer, train_texts, heldout = run.model, run.tokenizer, run.train, run.heldout
    args = SFTConfig(
        **_common_args(config, ctx.job_dir / "trainer"),
        max_length=config.max_length,
        dataset_text_field="text",
        packing=False,
    )
    tracker = RankTracker(ctx, subspaces=subspace_tracker(config))
    progress = _LoRAProgress(ctx, config, tracker)
    try:
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict({"text": train_texts}),
            processing_class=tokenizer,
            callbacks=[
                progress,
                *diagnostics_callbacks(
                    config, ctx, tokenizer=tokenizer, train=train_texts, heldout=heldout
                ),
            ],
            peft_config=lora_config(config),
        )
    except ValueError as exc:
        if "target modules" in str(exc).lower() or "not found" in str(exc).lower():
            raise SubnetScopeError(
                f"target_modules '{config.target_modules}' match no layer of {config.model}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        raise
    trained = trainer.model  # a PeftModel
    progress.model = trained
    ctx.progress(0.1, "training")
    trainer.train()
    ctx.progress(0.87, "scoring the adapted model")
    after = perplexity(trained, tokenizer, heldout, config.max_length)
    ctx.metric("heldout_ppl", after, step=config.steps)
    out = ctx.result_dir / ADAPTER
    with atomic_dir(out) as tmp:
        trained.save_pretrained(str(tmp), safe_serialization=True)
        _set_base_model(tmp, config.model)
    losses = [
        {"step": int(e["step"]), "loss": float(e["loss"])}
        for e in trainer.state.log_history
        if "loss" in e
    ]
    return write_run(
        ctx,
        config,
        run,
        kind="lora",
        out=("adapter", out),
        after=after,
        losses=losses,
        tracker=tracker,
    )


def write_run(
    ctx: JobContext,
    config: LowRankConfig,
    run: Setup,
    *,
    kind: str,
    out: tuple[str, Path],
    after: float,
    losses: list[dict],
    tracker: RankTracker,
    extra: dict | None = None,
) -> dict:
    """The rank table and run.json of a finished low-rank run; returns the job's summary."""
    tracker.write()
    key, path = out
    summary = {
        "kind": kind,
        key: str(path),
        "model": config.model,
        "dataset": config.dataset,
        "train_texts": len(run.train),
        "heldout_texts": len(run.heldout),
        "before": {"heldout_ppl": run.before},
        "after": {"heldout_ppl": after},
        "losses": losses,
        "final_loss": losses[-1]["loss"] if losses else None,
        "rank": tracker.summary(),
        "rank_table": RANK_TABLE,
        **(extra or {}),
        "steps": config.steps,
        "seconds": round(time.monotonic() - run.started, 2),
        "config": config.to_params(),
    }
    ctx.write_json(RUN_JSON, summary)
    ctx.progress(1.0, f"held-out ppl {run.before:.3g} → {after:.3g}")
    return {
        k: summary[k]
        for k in ("kind", key, "model", "dataset", "before", "after", "final_loss", "seconds")
    }
