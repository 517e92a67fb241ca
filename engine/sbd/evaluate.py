"""SBD against autoregressive decoding of the same fine-tune, on held-out demo sums: accuracy,
forward passes per token, wall time, agreement with the autoregressive text and the perplexity of
the generations under the base model (issue 23; Gat, Ben-Hamu et al., arXiv 2509.04185 §3)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.data.demo_tasks import DEMO_ARITHMETIC, demo_arithmetic_records
from engine.data.formats import Example
from engine.errors import SubnetScopeError
from engine.sbd.config import (
    EVAL_FILE,
    EVAL_SUMMARY,
    HELDOUT_FILE,
    MODEL_DIR,
    RUN_JSON,
    SAMPLES_FILE,
    EvalConfig,
    SBDConfig,
)

if TYPE_CHECKING:
    import pandas as pd

    from engine.jobs import JobContext
    from engine.models import LoadedModel
    from engine.models.sbd_decoding import CountedGeneration

AR, SBD = "autoregressive", "sbd"
ACCURACY_TOLERANCE = 0.02  # the "accuracy within 2 points" of autoregressive decoding
_PAIR = re.compile(r"(\d+)\s*\+\s*(\d+)")
_INTEGER = re.compile(r"-?\d+")
_PAIRS = 90 * 90  # demo_arithmetic_records draws a and b from 10..99

TABLE_COLUMNS = [
    "method",
    "threshold",
    "block_size",
    "examples",
    "accuracy",
    "forwards",
    "tokens",
    "forwards_per_token",
    "forwards_per_answer",
    "speedup",
    "seconds_per_answer",
    "agreement",
    "base_ppl",
    "base_scored",
]


def operands(record: Mapping[str, Any] | Example) -> tuple[int, int] | None:
    """(a, b) of a demo-arithmetic record or Example ("What is a + b?"), else None."""
    instruction = record.get("instruction") if isinstance(record, Mapping) else record.instruction
    match = _PAIR.search(instruction) if isinstance(instruction, str) else None
    return (int(match[1]), int(match[2])) if match else None


def arithmetic_examples(n: int, seed: int, exclude: Iterable[Mapping[str, Any]] = ()) -> list[dict]:
    """`n` demo-arithmetic records drawn with `seed`, none of whose (a, b) pairs appears in
    `exclude` (the training records) nor twice among themselves: held out by construction, not by
    luck of the seed."""
    if n < 1:
        raise SubnetScopeError(f"the number of held-out examples must be ≥ 1, not {n}")
    taken = {pair for pair in map(operands, exclude) if pair is not None}
    if n > _PAIRS - len(taken):
        raise SubnetScopeError(
            f"only {_PAIRS - len(taken)} two-digit sums are left outside the training set; "
            f"ask for at most that many held-out examples, not {n}"
        )
    pool = 2 * n + len(taken)
    while True:
        # demo_arithmetic_records draws pairs in order: a larger pool extends the same sequence.
        found: dict[tuple[int, int], dict] = {}
        for record in demo_arithmetic_records(pool, seed):
            pair = operands(record)
            if pair not in taken and pair not in found:
                found[pair] = record
                if len(found) == n:
                    return list(found.values())
        pool *= 2


def expected_answer(record: Mapping[str, Any] | Example) -> int:
    pair = operands(record)
    if pair is None:
        raise SubnetScopeError(
            f"not a demo-arithmetic example (no 'a + b' in its instruction): {record!r:.120}"
        )
    return pair[0] + pair[1]


def answer_correct(record: Mapping[str, Any] | Example, text: str) -> bool:
    """True when the first integer after the first "=" in `text` equals a + b of the record's
    "What is a + b?" ("17 + 25 = 42." is right for 17 + 25; no "=" or no integer after it is
    wrong)."""
    _, equals, after = text.partition("=")
    found = _INTEGER.search(after) if equals else None
    return found is not None and int(found[0]) == expected_answer(record)


def eos_id(loaded: LoadedModel) -> int | None:
    """The end-of-sequence id decoding stops at: the generation config's first, else the
    tokenizer's (as engine/models/sbd_decoding.py reads them)."""
    eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    eos = eos[0] if isinstance(eos, list) and eos else eos
    return int(eos) if eos is not None else loaded.tokenizer.eos_token_id


def generated_tokens(generation: CountedGeneration, eos: int | None) -> list[int]:
    """The new token ids with the EOS that ended the generation (it took a forward too)."""
    ids = list(generation.token_ids)
    if generation.stopped_at_eos and eos is not None:
        ids.append(int(eos))
    return ids


def generation_nll(base: LoadedModel, prompt: str, token_ids: Sequence[int]) -> float | None:
    """Summed NLL (nats) of `token_ids` following `prompt` under the base model; the prompt's own
    tokens are context only, not scored. None when a token is outside the base vocabulary (the
    SBD mask token, which only an untrained model emits)."""
    import torch
    import torch.nn.functional as F

    from engine.models import input_device

    vocab = base.model.get_input_embeddings().num_embeddings
    if any(not 0 <= t < vocab for t in token_ids):
        return None
    prompt_ids = base.tokenizer(prompt, return_tensors="pt")["input_ids"][0].tolist()
    ids = torch.tensor([prompt_ids + list(token_ids)], device=input_device(base.model))
    with torch.inference_mode():
        logits = base.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    return F.cross_entropy(logits, ids[0, len(prompt_ids) :], reduction="sum").item()


def _sample_row(
    index: int,
    example: Example,
    generation: CountedGeneration,
    tokens: int,
    nll: float | None,
    ar_text: str,
) -> dict[str, Any]:
    arithmetic = operands(example) is not None
    return {
        "example": index,
        "instruction": example.instruction,
        "expected": expected_answer(example) if arithmetic else example.response,
        "method": generation.method,
        "threshold": generation.threshold,
        "block_size": generation.block_size,
        "text": generation.text,
        # Other instruction data: the reference response, exactly (spaces at the ends aside).
        "correct": answer_correct(example, generation.text)
        if arithmetic
        else generation.text.strip() == (example.response or "").strip(),
        "agrees_with_ar": generation.text == ar_text,
        "forwards": generation.forwards,
        "tokens": tokens,  # new tokens, the ending EOS included
        "stopped_at_eos": generation.stopped_at_eos,
        "passes": list(generation.passes),
        "pieces": list(generation.pieces),
        "seconds": generation.seconds,
        # nats per generated token under the base model; NaN: not scorable (see generation_nll)
        "base_nll": nll / tokens if nll is not None and tokens else float("nan"),
    }


def trade_off_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per method / threshold from the samples table (see `evaluate_run`)."""
    import pandas as pd

    ar_forwards = int(samples.loc[samples["method"] == AR, "forwards"].sum())
    rows = []
    keys = [samples["method"], samples["threshold"].fillna(-1.0)]  # AR's threshold is None
    for (method, threshold), group in samples.groupby(keys, sort=False):
        forwards, tokens = int(group["forwards"].sum()), int(group["tokens"].sum())
        scored = group[group["base_nll"].notna()]
        scored_tokens = int(scored["tokens"].sum())
        nll = float((scored["base_nll"] * scored["tokens"]).sum())
        rows.append(
            {
                "method": method,
                "threshold": None if method == AR else float(threshold),
                "block_size": int(group["block_size"].iloc[0]),
                "examples": len(group),
                "accuracy": float(group["correct"].mean()),
                "forwards": forwards,
                "tokens": tokens,
                "forwards_per_token": forwards / tokens if tokens else float("nan"),
                "forwards_per_answer": forwards / len(group),
                "speedup": ar_forwards / forwards if forwards else float("nan"),
                "seconds_per_answer": float(group["seconds"].mean()),
                "agreement": float(group["agrees_with_ar"].mean()),
                "base_ppl": math.exp(nll / scored_tokens) if scored_tokens else float("nan"),
                "base_scored": len(scored),
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _as_example(item: Mapping[str, Any] | Example) -> Example:
    from engine.data.formats import to_example

    example = item if isinstance(item, Example) else to_example(item)
    if example.instruction is None or example.response is None:
        raise SubnetScopeError(
            "decoding is evaluated on instruction examples (a prompt and its answer); plain "
            "texts have no prompt to answer"
        )
    return example


def evaluate_run(
    loaded: LoadedModel,
    base_loaded: LoadedModel,
    examples: Sequence[Mapping[str, Any] | Example],
    template: str,
    thresholds: Sequence[float],
    block_size: int = 16,
    max_new_tokens: int = 32,
    ntp_first: bool = False,
    ctx: JobContext | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode every example's prompt (in the run's `template`) autoregressively and with SBD at
    each threshold γ, on the same fine-tuned model. Returns (table, samples):

    - table: one autoregressive row, then one row per γ. accuracy = share of `answer_correct`
      (other instruction data: the reference response exactly); forwards_per_token = Σ forward
      passes / Σ new tokens, the ending EOS included (1.0 for autoregressive decoding); speedup =
      the autoregressive Σ forwards / this row's Σ forwards on the same examples; agreement =
      share of texts equal to the autoregressive one; base_ppl = exp(Σ NLL / Σ tokens) of the
      generated tokens (EOS included) given the prompt under the base model, over the
      `base_scored` generations it can read.
    - samples: one row per example × method / γ with its text, forward passes and `passes` (the
      1-based pass that produced each new token).

    `ctx` (a job's context) gets a metric per row and, unless `progress` is given, the progress in
    [0, 1] over the generations."""
    import pandas as pd

    from engine.data.formats import format_prompt
    from engine.models.sbd_decoding import ar_generate, sbd_generate

    if not examples:
        raise SubnetScopeError("no examples to evaluate")
    cases = [_as_example(e) for e in examples]
    thresholds = [float(t) for t in thresholds]
    eos = eos_id(loaded)
    prompts = [format_prompt(e, template, loaded.tokenizer) for e in cases]
    total, done = len(cases) * (1 + len(thresholds)), 0
    scores: dict[tuple[int, tuple[int, ...]], float | None] = {}  # identical texts score once
    progress = progress or (ctx.progress if ctx is not None else None)
    rows = []

    def row(index: int, generation: CountedGeneration, ar_text: str) -> dict[str, Any]:
        nonlocal done
        ids = tuple(generated_tokens(generation, eos))
        if (index, ids) not in scores:
            scores[index, ids] = generation_nll(base_loaded, prompts[index], ids) if ids else None
        done += 1
        if progress is not None:
            what = AR if generation.method == AR else f"SBD γ = {generation.threshold:g}"
            progress(done / total, f"{what}: example {index + 1}/{len(cases)}")
        return _sample_row(index, cases[index], generation, len(ids), scores[index, ids], ar_text)

    ar_texts = []
    for index, prompt in enumerate(prompts):
        generation = ar_generate(loaded, prompt, max_new_tokens=max_new_tokens)
        ar_texts.append(generation.text)
        rows.append(row(index, generation, generation.text))
    for threshold in thresholds:
        for index, prompt in enumerate(prompts):
            generation = sbd_generate(
                loaded,
                prompt,
                block_size=block_size,
                threshold=threshold,
                max_new_tokens=max_new_tokens,
                ntp_first=ntp_first,
            )
            rows.append(row(index, generation, ar_texts[index]))
    samples = pd.DataFrame(rows)
    table = trade_off_table(samples)
    if ctx is not None:
        for r in table.itertuples():
            step = -1 if r.method == AR else r.threshold  # step -1: the autoregressive reference
            ctx.metric("eval/forwards_per_token", r.forwards_per_token, step=step)
            ctx.metric("eval/accuracy", r.accuracy, step=step)
    return table, samples


def evaluation_summary(table: pd.DataFrame) -> dict[str, Any]:
    """The issue's question in one sentence: the largest SBD speed-up whose accuracy stays within
    2 points of autoregressive decoding of the same model."""
    ar = table[table["method"] == AR].iloc[0]
    sbd = table[table["method"] == SBD]
    kept = sbd[sbd["accuracy"] >= ar["accuracy"] - ACCURACY_TOLERANCE - 1e-9]
    best = kept.sort_values("speedup", ascending=False).iloc[0] if len(kept) else None
    against = (
        f"autoregressive: {ar['accuracy']:.0%}, {ar['forwards_per_answer']:.1f} passes per "
        f"answer; {int(ar['examples'])} held-out examples"
    )
    if best is None:
        message = f"no threshold kept the accuracy within 2 points of autoregressive ({against})"
    else:
        message = (
            f"SBD k = {int(best['block_size'])}, γ = {best['threshold']:g}: "
            f"{best['speedup']:.2f}× fewer forward passes at accuracy {best['accuracy']:.0%} "
            f"({against})"
        )
    return {
        "message": message,
        "ar_accuracy": float(ar["accuracy"]),
        "best_threshold": None if best is None else float(best["threshold"]),
        "best_speedup": None if best is None else float(best["speedup"]),
        "best_accuracy": None if best is None else float(best["accuracy"]),
        # The bar: ≥ 2× fewer forward passes at an accuracy within 2 points.
        "meets_target": best is not None and float(best["speedup"]) >= 2.0,
    }


def write_evaluation(
    ctx: JobContext, table: pd.DataFrame, samples: pd.DataFrame, **facts: Any
) -> dict[str, Any]:
    """EVAL_FILE, SAMPLES_FILE and EVAL_SUMMARY (the summary, `facts` and the table's rows) into
    the job's result folder; returns the summary with `facts`."""
    ctx.write_table(EVAL_FILE, table)
    ctx.write_table(SAMPLES_FILE, samples)
    summary = {**evaluation_summary(table), **facts}
    rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    ctx.write_json(EVAL_SUMMARY, {**summary, "rows": rows})
    return summary


def evaluate_finished_run(
    config: SBDConfig, ctx: JobContext, loaded: LoadedModel, heldout: Sequence[Example]
) -> dict[str, Any] | None:
    """The end of an `sbd.train` job: its model decoded on its own held-out examples at the
    config's thresholds (progress 0.75 → 0.99 of the job); writes the evaluation files and the
    examples (HELDOUT_FILE, which `sbd.evaluate` reads for data other than demo-arithmetic).
    None (nothing written) for plain texts: they hold no prompt to answer."""
    from dataclasses import asdict

    from engine.models import load_model

    if not heldout or any(e.instruction is None or e.response is None for e in heldout):
        ctx.log("decoding not evaluated: the held-out examples are plain texts, with no prompt")
        return None
    ctx.write_json(HELDOUT_FILE, [asdict(e) for e in heldout])
    ctx.progress(0.75, f"loading the base model {config.model} to score the generations")
    base = load_model(config.model, trust_remote_code=config.trust_remote_code)
    table, samples = evaluate_run(
        loaded,
        base,
        heldout,
        config.template,
        config.thresholds,
        block_size=config.eval_block_size,
        max_new_tokens=config.max_new_tokens,
        ctx=ctx,
        progress=lambda fraction, message: ctx.progress(0.75 + 0.24 * fraction, message),
    )
    return write_evaluation(
        ctx,
        table,
        samples,
        base=config.model,
        template=config.template,
        block_size=config.eval_block_size,
        thresholds=list(config.thresholds),
        examples="the run's held-out records",
    )


def held_out_examples(config: SBDConfig, n: int, seed: int, result: Path) -> list[Example]:
    """`n` examples the run never trained on: for demo-arithmetic, fresh sums drawn with `seed`
    outside every record of the dataset (a superset of what `limit` kept); for other data, at
    most `n` of those its end-of-training evaluation decoded (HELDOUT_FILE in `result`)."""
    from engine.data.formats import load_records, to_examples

    if config.dataset == DEMO_ARITHMETIC:
        return to_examples(arithmetic_examples(n, seed, load_records(config.dataset)))
    saved = result / HELDOUT_FILE
    if not saved.is_file():
        raise SubnetScopeError(
            f"this run saved no held-out examples of '{config.dataset}' ({HELDOUT_FILE}: it "
            "was trained with eval_examples = 0); only demo-arithmetic runs get fresh ones"
        )
    return [Example(**record) for record in json.loads(saved.read_text())[:n]]


def run_evaluation(config: EvalConfig, ctx: JobContext) -> dict[str, Any]:
    """The `sbd.evaluate` job: the named fine-tune and its base model, SBD at each threshold vs
    autoregressive decoding on held-out examples; writes EVAL_FILE, SAMPLES_FILE, EVAL_SUMMARY."""
    from engine.models import load_model
    from engine.sbd.catalog import find_run

    found = find_run(config.run)
    run = json.loads((found.path / RUN_JSON).read_text())
    trained = SBDConfig.from_params(run.get("config") or found.params, what=RUN_JSON)
    ctx.progress(0.0, f"loading the fine-tune of {found.view.id} and its base {trained.model}")
    loaded = load_model(str(found.path / MODEL_DIR), trust_remote_code=trained.trust_remote_code)
    base = load_model(trained.model, trust_remote_code=trained.trust_remote_code)
    examples = held_out_examples(trained, config.eval_examples, config.seed, found.path)
    table, samples = evaluate_run(
        loaded,
        base,
        examples,
        trained.template,
        config.thresholds,
        block_size=config.block_size,
        max_new_tokens=config.max_new_tokens,
        ntp_first=config.ntp_first,
        ctx=ctx,
    )
    return write_evaluation(
        ctx,
        table,
        samples,
        run=found.view.id,
        base=trained.model,
        template=trained.template,
        block_size=config.block_size,
        thresholds=list(config.thresholds),
        examples="fresh sums outside the training data"
        if trained.dataset == DEMO_ARITHMETIC
        else f"the run's held-out records ({HELDOUT_FILE})",
    )
