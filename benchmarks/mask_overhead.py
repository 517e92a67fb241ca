"""Mask overhead: masked against unmasked generation and forward passes on the demo model."""

from __future__ import annotations

import random
import statistics
import sys
import time

import torch

from benchmarks.runner import Result, benchmark, compare
from engine.models import (
    Generation,
    LoadedModel,
    NeuronMask,
    apply_mask,
    generate_text,
    load_model,
)

PROMPT = "The history of the printing press begins in"
NEW_TOKENS = 32
FORWARD_TOKENS = 128
FORWARD_TEXT = (
    "Language models store much of what they know in the neurons of their MLP layers. "
    "Switching a few of them off can change an answer, while most of them matter little. "
)
SEED = 0  # which neurons the spread masks pick


def build_masks(loaded: LoadedModel) -> dict[str, NeuronMask]:
    """The three masks under test, with neurons drawn from a fixed seed."""
    arch = loaded.architecture
    n_layers = arch.num_layers
    rng = random.Random(SEED)
    spread_1000 = [
        (layer, neuron)
        for layer in range(n_layers)
        # 1000 neurons as evenly as the layer count allows: 34 or 33 per layer on 30 layers.
        for neuron in rng.sample(
            range(arch.neurons_per_layer[layer]), 1000 // n_layers + (layer < 1000 % n_layers)
        )
    ]
    keep_50 = [
        (layer, neuron)
        for layer in range(n_layers)
        for neuron in rng.sample(range(arch.neurons_per_layer[layer]), 50)
    ]
    return {
        "zero_100_layer10": NeuronMask.from_pairs([(10, i) for i in range(100)], mode="zero"),
        "zero_1000_all_layers": NeuronMask.from_pairs(spread_1000, mode="zero"),
        "keep_50_per_layer": NeuronMask.from_pairs(keep_50, mode="keep"),
    }


def forward_seconds(
    loaded: LoadedModel, input_ids: torch.Tensor, mask: NeuronMask | None
) -> tuple[float, torch.Tensor]:
    """One forward pass, hook installation and removal included (as `generate_text` times it)."""
    started = time.perf_counter()
    with torch.inference_mode(), apply_mask(loaded, mask):
        logits = loaded.model(input_ids).logits  # (1, seq, vocab)
    return time.perf_counter() - started, logits[0, -1].float()


def rotated(
    variants: dict[str, NeuronMask | None], round_: int
) -> list[tuple[str, NeuronMask | None]]:
    """Round-robin over all variants, each round starting one later: every masked run sits
    beside an unmasked one under the same load, and no variant always runs first."""
    items = list(variants.items())
    shift = round_ % len(items)
    return items[shift:] + items[:shift]


def hooks_left(loaded: LoadedModel) -> int:
    arch = loaded.architecture
    return sum(
        len(arch.down_module(loaded.model, layer)._forward_pre_hooks)
        for layer in range(arch.num_layers)
    )


@benchmark("mask_overhead", repeats=5)
def mask_overhead(repeats: int) -> list[Result]:
    """Masked / unmasked time for greedy generation of 32 tokens and for one 128-token forward
    pass on the demo model; the forward ratio isolates the hooks from generate's per-token work."""
    started = time.perf_counter()
    loaded = load_model("demo")
    load_seconds = time.perf_counter() - started
    masks = build_masks(loaded)
    variants: dict[str, NeuronMask | None] = {"unmasked": None, **masks}

    def generate(mask: NeuronMask | None) -> Generation:
        return generate_text(loaded, PROMPT, max_new_tokens=NEW_TOKENS, mask=mask, chat=False)

    # Warm-up: one unmeasured call of each variant; it also gives the reference outputs.
    first = {name: generate(mask) for name, mask in variants.items()}
    gen_s: dict[str, list[float]] = {name: [] for name in variants}
    gen_tokens: dict[str, list[int]] = {name: [] for name in variants}
    last_unmasked_text = ""
    for round_ in range(repeats):
        for name, mask in rotated(variants, round_):
            out = generate(mask)
            gen_s[name].append(out.seconds)
            gen_tokens[name].append(out.new_tokens)
            if mask is None:
                last_unmasked_text = out.text

    ids = loaded.tokenizer(FORWARD_TEXT * 8, return_tensors="pt")["input_ids"]
    input_ids = ids[:, :FORWARD_TOKENS].to(loaded.device)  # (1, 128)
    if input_ids.shape[1] != FORWARD_TOKENS:
        raise RuntimeError(f"FORWARD_TEXT is too short for {FORWARD_TOKENS} tokens")
    # Warm-up again, and the reference logits for the sanity checks.
    ref_logits = {n: forward_seconds(loaded, input_ids, m)[1] for n, m in variants.items()}
    fwd_s: dict[str, list[float]] = {name: [] for name in variants}
    last_unmasked_logits = ref_logits["unmasked"]
    for round_ in range(repeats):
        for name, mask in rotated(variants, round_):
            seconds, logits = forward_seconds(loaded, input_ids, mask)
            fwd_s[name].append(seconds)
            if mask is None:
                last_unmasked_logits = logits

    shared = {
        "model": loaded.display_name,
        "load_seconds": round(load_seconds, 3),
        "prompt": PROMPT,
        # Sanity: the shared model is unchanged after all the masked calls.
        "unmasked_text_stable": last_unmasked_text == first["unmasked"].text,
        "unmasked_logits_stable": bool(torch.equal(last_unmasked_logits, ref_logits["unmasked"])),
        "hooks_left_after": hooks_left(loaded),
    }
    results: list[Result] = []
    for name, mask in masks.items():
        base = {"mask": mask.mode, "mask_neurons": mask.size} | shared
        gen_differs = first[name].text != first["unmasked"].text
        results.append(
            compare(
                f"mask_overhead.generate.{name}",
                f"seconds for greedy generate_text of {NEW_TOKENS} tokens with the mask (median)",
                gen_s[name],
                "unmasked generate_text",
                gen_s["unmasked"],
                details=base
                | {
                    "paired_ratio_median": _paired_ratio(gen_s[name], gen_s["unmasked"]),
                    "new_tokens": gen_tokens[name],
                    "unmasked_new_tokens": gen_tokens["unmasked"],
                    "output_differs": gen_differs,
                    "masked_text": first[name].text,
                    "unmasked_text": first["unmasked"].text,
                },
            )
        )
        logit_shift = (ref_logits[name] - ref_logits["unmasked"]).abs().max().item()
        results.append(
            compare(
                f"mask_overhead.forward{FORWARD_TOKENS}.{name}",
                f"seconds for one forward pass over {FORWARD_TOKENS} tokens with the mask (median)",
                fwd_s[name],
                "unmasked forward pass",
                fwd_s["unmasked"],
                details=base
                | {
                    "paired_ratio_median": _paired_ratio(fwd_s[name], fwd_s["unmasked"]),
                    "output_differs": logit_shift > 0,
                    "max_abs_logit_shift": round(logit_shift, 6),
                },
            )
        )
    _warn_if_insane(results)
    return results


def _paired_ratio(masked: list[float], unmasked: list[float]) -> float:
    """Median over rounds of masked/unmasked from the same round: robust to drifting load."""
    return round(statistics.median(m / u for m, u in zip(masked, unmasked, strict=True)), 6)


def _warn_if_insane(results: list[Result]) -> None:
    d = results[0].details
    problems = [key for key in ("unmasked_text_stable", "unmasked_logits_stable") if not d[key]]
    if d["hooks_left_after"]:
        problems.append(f"{d['hooks_left_after']} hooks left on the model")
    problems += [
        f"{r.name}: masked output equals unmasked"
        for r in results
        if "zero_1000" in r.name and not r.details["output_differs"]
    ]
    for problem in problems:
        print(f"warning: mask_overhead sanity check failed: {problem}", file=sys.stderr)
