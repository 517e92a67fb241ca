"""Pruning (issue 7): LRP relevance against a plain forward + backward on the same texts, and the
live toggle (a reversible pruning mask of N neurons) against unpruned generation, on the demo model.

LRP: `lrp_relevance(rules="cp")` patches torch process-wide through LXT, so it runs in a child
process of its own (`load_for_lrp`: float32, gradients possible). The baselines run in a second
child that never imports lxt, on the same model load (float32) and the same texts truncated the
same way: the plain pass is `model(inputs_embeds=...)`, the teacher-forced target
Σ_t logit[t, token[t+1]] and `target.backward()` into the input embeddings only (the parameters
do not require grad, as LRP never computes their gradients); the unpatched pass is
`lrp_relevance` itself with LXT's patch replaced by a no-op: the same hooks, ∂W = Σ_t g_t ⊗ x_t
and |W ⊙ ∂W| of every up projection, with plain gradients. So lrp / plain is the whole price of
an LRP pass over a gradient pass, and lrp / unpatched what LXT's rules alone add.
The two children run one after the other (LXT's patches cannot be undone, so LRP passes cannot
interleave with plain ones); each times one warm-up pass and then REPEATS passes over all texts,
and inside the baseline child its two passes alternate.

Live toggle: `pruning_mask` of N `Selected` neurons spread over layers 10-25 (seeded), then greedy
`generate_text` of 32 tokens, against the same call without a mask; wall seconds of each (the
pruned one includes building the mask), after one unmeasured warm-up of each.

Size: `SUBNETSCOPE_BENCH_PRUNING_SIZE` as TEXTSxTOKENSxNEURONS (default 4x64x100): TEXTS texts of
demo-general (seed 0) truncated to TOKENS tokens, NEURONS pruned neurons.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from unittest import mock

from benchmarks.runner import BENCH_THREADS, Result, benchmark, compare, json_child, spread

SIZE_ENV = "SUBNETSCOPE_BENCH_PRUNING_SIZE"
DEFAULT_SIZE = "4x64x100"
SOURCE = "demo"
TEXT_SOURCE = "demo-general"
TEXT_SEED = 0
PROMPT = "The history of the printing press begins in"
NEW_TOKENS = 32
LAYERS = range(10, 26)  # where the pruned neurons are drawn from (clipped to the model's layers)
SEED = 0  # which neurons are pruned
TIMEOUT = 600


def parse_size(text: str) -> tuple[int, int, int]:
    """TEXTSxTOKENSxNEURONS, e.g. 4x64x100."""
    try:
        texts, tokens, neurons = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{SIZE_ENV} must be TEXTSxTOKENSxNEURONS, not {text!r}") from None
    if texts < 1 or tokens < 2 or neurons < 1:
        raise ValueError(f"{SIZE_ENV}={text!r}: need ≥ 1 text, ≥ 2 tokens and ≥ 1 neuron")
    return texts, tokens, neurons


# ---- children (python -m benchmarks.pruning lrp|baseline TEXTS TOKENS REPEATS) ----


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _child_lrp(texts: list[str], tokens: int, repeats: int) -> dict:
    """In a child that LXT may patch: one warm-up then `repeats` timed `lrp_relevance` passes."""
    from engine.attribution.lrp import lrp_relevance
    from engine.attribution.lxt_compat import load_for_lrp

    loaded = load_for_lrp(SOURCE, rules="cp")
    seconds: list[float] = []
    relevance = lrp_relevance(loaded, texts, max_length=tokens, rules="cp")
    for _ in range(repeats):
        started = time.perf_counter()
        relevance = lrp_relevance(loaded, texts, max_length=tokens, rules="cp")
        seconds.append(time.perf_counter() - started)
    return {
        "lrp": seconds,
        "tokens": relevance.tokens,
        "samples": relevance.samples,
        "target_sum": relevance.target_sum,
        "input_sum": relevance.input_sum,
        "device": str(loaded.device),
        "lxt_imported": "lxt" in sys.modules,
    }


def _plain_pass(loaded, texts: list[str], tokens: int) -> tuple[float, float, int]:
    """Seconds of forward + backward into the input embeddings over all texts, mirroring
    lrp.py's `_backward` (one text at a time, no padding); also the target sum and token count."""
    import torch

    model = loaded.model
    target_sum, count = 0.0, 0
    started = time.perf_counter()
    for text in texts:
        ids = loaded.tokenizer(text, return_tensors="pt", truncation=True, max_length=tokens)
        ids = ids.input_ids.to(loaded.device)
        if ids.shape[1] < 2:
            continue
        with torch.enable_grad():
            embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
            logits = model(inputs_embeds=embeds, use_cache=False).logits
            target = logits[0, :-1].gather(-1, ids[0, 1:, None]).float().sum()
            target.backward()
        target_sum += float(target.detach())
        count += ids.shape[1]
    _sync(loaded.device)
    return time.perf_counter() - started, target_sum, count


def _child_baseline(texts: list[str], tokens: int, repeats: int) -> dict:
    """In a child without LXT: the plain pass and lrp_relevance with the patch made a no-op,
    interleaved (each round starting with the other), after one warm-up of each."""
    import torch

    import engine.attribution.lrp as lrp
    from engine.models import load_model

    loaded = load_model(SOURCE, inference=False, dtype=torch.float32)
    loaded.model.eval()
    loaded.model.requires_grad_(False)  # LRP never computes parameter gradients either

    def unpatched() -> tuple[float, object]:
        with mock.patch.object(lrp, "patch_for", lambda model, rules="cp": None):
            started = time.perf_counter()
            relevance = lrp.lrp_relevance(loaded, texts, max_length=tokens, rules="cp")
            return time.perf_counter() - started, relevance

    _, plain_target, plain_tokens = _plain_pass(loaded, texts, tokens)
    _, relevance = unpatched()
    plain: list[float] = []
    grad_lrp: list[float] = []
    for round_ in range(repeats):
        for which in ("plain", "unpatched")[:: 1 if round_ % 2 == 0 else -1]:
            if which == "plain":
                plain.append(_plain_pass(loaded, texts, tokens)[0])
            else:
                grad_lrp.append(unpatched()[0])
    return {
        "plain": plain,
        "unpatched": grad_lrp,
        "tokens": plain_tokens,
        "target_sum": plain_target,
        "unpatched_target_sum": relevance.target_sum,
        "unpatched_input_sum": relevance.input_sum,
        "device": str(loaded.device),
        "lxt_imported": "lxt" in sys.modules,
    }


def _child(mode: str, n_texts: str, tokens: str, repeats: str) -> dict:
    from engine.data import load_texts
    from engine.runtime import limit_threads

    limit_threads(BENCH_THREADS)
    texts = load_texts(TEXT_SOURCE, limit=int(n_texts), seed=TEXT_SEED)
    run = {"lrp": _child_lrp, "baseline": _child_baseline}[mode]
    return run(texts, int(tokens), int(repeats))


def run_child(mode: str, texts: int, tokens: int, repeats: int) -> dict:
    argv = ["benchmarks.pruning", mode, str(texts), str(tokens), str(repeats)]
    return json_child(argv, f"{mode} child", TIMEOUT)


# ---- live toggle (in this process, which never imports lxt) ----


def spread_neurons(loaded, num: int, seed: int = SEED) -> list:
    """`num` distinct neurons drawn uniformly from layers 10-25, as `Selected` entries ordered
    by a made-up score (most prunable, most negative, first)."""
    from engine.attribution.scores import Selected

    arch = loaded.architecture
    layers = [layer for layer in LAYERS if layer < arch.num_layers] or [arch.num_layers - 1]
    population = [(layer, i) for layer in layers for i in range(arch.neurons_per_layer[layer])]
    if num > len(population):
        raise ValueError(f"{SIZE_ENV}: {num} neurons, but layers {layers} hold {len(population)}")
    rng = random.Random(seed)
    picked = rng.sample(population, num)
    scores = sorted(-rng.random() for _ in picked)
    pairs = zip(picked, scores, strict=True)
    return [Selected(layer, neuron, score) for (layer, neuron), score in pairs]


def live_toggle(repeats: int, num: int) -> Result:
    from engine.attribution.pruning import pruning_mask
    from engine.models import generate_text, load_model

    started = time.perf_counter()
    loaded = load_model(SOURCE)
    load_seconds = time.perf_counter() - started
    neurons = spread_neurons(loaded, num)

    def pruned():
        mask = pruning_mask(neurons)
        return generate_text(loaded, PROMPT, max_new_tokens=NEW_TOKENS, chat=False, mask=mask)

    def unpruned():
        return generate_text(loaded, PROMPT, max_new_tokens=NEW_TOKENS, chat=False)

    variants = {"pruned": pruned, "unpruned": unpruned}
    first = {name: fn() for name, fn in variants.items()}  # warm-up and reference outputs
    wall: dict[str, list[float]] = {name: [] for name in variants}
    inner: dict[str, list[float]] = {name: [] for name in variants}
    new_tokens: dict[str, list[int]] = {name: [] for name in variants}
    stable = True
    for round_ in range(repeats):
        # Alternating, each round starting with the other, so both see the same load.
        for name in list(variants)[:: 1 if round_ % 2 == 0 else -1]:
            started = time.perf_counter()
            out = variants[name]()
            wall[name].append(time.perf_counter() - started)
            inner[name].append(out.seconds)
            new_tokens[name].append(out.new_tokens)
            stable &= out.text == first[name].text
    mask = pruning_mask(neurons)
    return compare(
        "pruning.live_toggle.generate",
        f"seconds for pruning_mask({num} neurons) + greedy generate_text of {NEW_TOKENS} tokens "
        "(median)",
        wall["pruned"],
        "the same generate_text without a mask",
        wall["unpruned"],
        details={
            "model": loaded.display_name,
            "load_seconds": round(load_seconds, 3),
            "prompt": PROMPT,
            "pruned_neurons": mask.size,
            "layers": sorted(mask.neurons),
            "generate_seconds_pruned": spread(inner["pruned"]),
            "generate_seconds_unpruned": spread(inner["unpruned"]),
            "new_tokens_pruned": new_tokens["pruned"],
            "new_tokens_unpruned": new_tokens["unpruned"],
            "output_differs": first["pruned"].text != first["unpruned"].text,
            "outputs_stable": stable,
            "lxt_imported": "lxt" in sys.modules,  # must stay False: LXT would patch this process
            "pruned_text": first["pruned"].text,
            "unpruned_text": first["unpruned"].text,
        },
    )


@benchmark("pruning", repeats=3)
def pruning(repeats: int) -> list[Result]:
    """Seconds of an LRP (CP-LRP) pass against a plain forward + backward and against the same
    bookkeeping with plain gradients; seconds of a pruned (live toggle) generation against an
    unpruned one."""
    size = os.environ.get(SIZE_ENV, DEFAULT_SIZE)
    n_texts, tokens, num = parse_size(size)
    lrp = run_child("lrp", n_texts, tokens, repeats)
    base = run_child("baseline", n_texts, tokens, repeats)
    if base["lxt_imported"]:
        raise RuntimeError("the baseline child imported lxt: its timings would be patched")
    if lrp["tokens"] != base["tokens"]:
        raise RuntimeError(f"LRP saw {lrp['tokens']} tokens, the baseline {base['tokens']}")
    shared = {
        "model": SOURCE,
        "texts": n_texts,
        "max_tokens_per_text": tokens,
        "tokens": lrp["tokens"],
        "samples": lrp["samples"],
        "rules": "cp",
        "device": lrp["device"],
        # Sanity: the patched forward explains the same logits; CP-LRP conserves them.
        "lrp_target_sum": round(lrp["target_sum"], 3),
        "plain_target_sum": round(base["target_sum"], 3),
        "lrp_input_over_target": round(lrp["input_sum"] / lrp["target_sum"], 4),
        "unpatched_input_over_target": round(
            base["unpatched_input_sum"] / base["unpatched_target_sum"], 4
        ),
        "baseline_imported_lxt": base["lxt_imported"],
        "size_env": f"{SIZE_ENV}={size}",
    }
    bookkeeping = statistics.median(base["unpatched"]) / statistics.median(base["plain"])
    results = [
        compare(
            "pruning.lrp.vs_forward_backward",
            f"seconds of lrp_relevance (CP-LRP, |W·∂W| of every up projection) over {n_texts} "
            f"texts of ≤ {tokens} tokens (median)",
            lrp["lrp"],
            "plain forward + target.backward() into the input embeddings, no LXT",
            base["plain"],
            details=shared | {"unpatched_over_plain": round(bookkeeping, 4)},
        ),
        compare(
            "pruning.lrp.vs_unpatched",
            "seconds of lrp_relevance with LXT's CP-LRP patches (median)",
            lrp["lrp"],
            "lrp_relevance without the patches (plain gradients, same |W·∂W| bookkeeping)",
            base["unpatched"],
            details=shared,
        ),
    ]
    results.append(live_toggle(repeats, num))
    results[-1].details["size_env"] = shared["size_env"]
    return results


if __name__ == "__main__":
    # Child mode: python -m benchmarks.pruning lrp|baseline TEXTS TOKENS REPEATS
    print(json.dumps(_child(*sys.argv[1:5])))
