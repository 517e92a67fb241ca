"""Set Block Decoding (issue 23): forward passes and wall time of `sbd_generate` at the paper's
thresholds γ against `ar_generate` (greedy, KV cache, one token per pass) on the same
SBD-trained checkpoint and the same prompts.

The checkpoint is the demo's SBD fine-tune (`python -m engine demo build`; skipped when it is not
built). The prompts are held-out demo sums (engine.sbd.evaluate.arithmetic_examples: none of
their a + b pairs is in demo-arithmetic) in the run's template; k = 16, at most 32 new tokens.
One process, one torch thread: one warm-up answer per method, then `repeats` rounds in which
every method answers every prompt (methods interleaved, so drift hits them alike). Forward passes
are counted by the decoders (the prompt's pass included) and do not vary between rounds; seconds
are each round's total over the prompts, divided by the prompts. The details give tokens per
forward, the accuracy of both sides and how often SBD's text equals the autoregressive one.

Quick mode (tests/test_sbd_evaluate.py): `SUBNETSCOPE_BENCH_SBD_MODEL` (an SBD model folder, its
prompts in the basic template) and `SUBNETSCOPE_BENCH_SBD_PROMPTS` (how many prompts).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from benchmarks.runner import Result, benchmark, compare

MODEL_ENV, PROMPTS_ENV = "SUBNETSCOPE_BENCH_SBD_MODEL", "SUBNETSCOPE_BENCH_SBD_PROMPTS"
PROMPTS = 20
BLOCK = 16
MAX_NEW_TOKENS = 32


def _checkpoint() -> tuple[str, str, str] | None:
    """(model folder, template, what it is) of the checkpoint to measure; None: not built."""
    import json

    from engine.errors import SubnetScopeError
    from engine.sbd.catalog import find_run
    from engine.sbd.config import MODEL_DIR, RUN_JSON

    folder = os.environ.get(MODEL_ENV)
    if folder:
        return folder, "basic", folder
    try:
        found = find_run("demo")
    except SubnetScopeError:
        return None
    run = json.loads((found.path / RUN_JSON).read_text())
    return str(found.path / MODEL_DIR), run.get("template", "auto"), f"demo run {found.view.id}"


@benchmark("sbd_decoding", repeats=3)
def sbd_decoding(repeats: int) -> list[Result]:
    """Forward passes and seconds per answer: SBD at each γ against autoregressive decoding."""
    from engine.data.formats import format_prompt, load_records, to_examples
    from engine.models import load_model
    from engine.models.sbd_decoding import ar_generate, sbd_generate
    from engine.sbd.config import PAPER_THRESHOLDS
    from engine.sbd.evaluate import answer_correct, arithmetic_examples

    checkpoint = _checkpoint()
    if checkpoint is None:
        print("sbd_decoding skipped: the demo's SBD fine-tune is not built", file=sys.stderr)
        return []
    folder, template, label = checkpoint
    loaded = load_model(folder, dtype="fp32")
    n = int(os.environ.get(PROMPTS_ENV, PROMPTS))
    examples = to_examples(arithmetic_examples(n, 1, load_records("demo-arithmetic")))
    prompts = [format_prompt(e, template, loaded.tokenizer) for e in examples]
    methods: dict[str, Any] = {
        "ar": lambda p: ar_generate(loaded, p, max_new_tokens=MAX_NEW_TOKENS),
        **{
            g: (
                lambda p, g=g: sbd_generate(
                    loaded, p, block_size=BLOCK, threshold=g, max_new_tokens=MAX_NEW_TOKENS
                )
            )
            for g in PAPER_THRESHOLDS
        },
    }
    for run in methods.values():
        run(prompts[0])  # warm-up
    seconds: dict[Any, list[float]] = {m: [] for m in methods}
    outputs: dict[Any, list] = {}
    for _ in range(repeats):
        for method, run in methods.items():
            started = time.perf_counter()
            outputs[method] = [run(p) for p in prompts]
            seconds[method].append((time.perf_counter() - started) / len(prompts))

    def facts(method) -> dict[str, Any]:
        gens = outputs[method]
        produced = sum(len(g.token_ids) + g.stopped_at_eos for g in gens)
        forwards = sum(g.forwards for g in gens)
        return {
            "forwards": forwards,
            "tokens_incl_eos": produced,
            "tokens_per_forward": produced / forwards,
            "accuracy": sum(answer_correct(e, g.text) for e, g in zip(examples, gens, strict=True))
            / len(gens),
        }

    ar = facts("ar")
    common = {
        "model": label,
        "prompts": len(prompts),
        "block_size": BLOCK,
        "max_new_tokens": MAX_NEW_TOKENS,
        "threads": "torch 1 thread, one process, methods interleaved per round",
    }
    results = []
    for gamma in PAPER_THRESHOLDS:
        sbd = facts(gamma)
        same = sum(
            a.text == b.text for a, b in zip(outputs["ar"], outputs[gamma], strict=True)
        ) / len(prompts)
        details = {**common, "threshold": gamma, "sbd": sbd, "autoregressive": ar}
        details["same_text_as_autoregressive"] = same
        baseline = "autoregressive greedy decoding (ar_generate), same model and prompts"
        results.append(
            Result(
                name=f"sbd_decoding.forwards.gamma_{gamma:g}",
                metric=f"forward passes per answer, SBD k={BLOCK} γ={gamma:g}",
                value=sbd["forwards"] / len(prompts),
                unit="passes",
                repeats=repeats,
                baseline=baseline,
                baseline_value=ar["forwards"] / len(prompts),
                ratio=sbd["forwards"] / ar["forwards"],
                details=details,
            )
        )
        results.append(
            compare(
                f"sbd_decoding.seconds.gamma_{gamma:g}",
                f"seconds per answer, SBD k={BLOCK} γ={gamma:g}",
                seconds[gamma],
                baseline,
                seconds["ar"],
                details=details,
            )
        )
    return results
