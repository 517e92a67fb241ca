"""How good is a generated adapter: held-out loss against the base and the task's teacher, and
the distance between their delta activations.

For every held-out task (its checkpoints never trained the generator) and every seen task with
prompts the generator never saw (the task's held-out prompts), the generator makes `eval_draws`
adapters, each from a fresh batch of N prompts (DnD scores 10 adapters from 10 prompt batches and
reports their mean). Each adapter, the base, the task's teacher (its last checkpoint) and the
teachers' mean adapter (the generator's anchor) are scored by the mean NLL of the held-out
examples' response tokens given their prompt. Recovery = (L_base − L_gen) / (L_base − L_teacher):
1 matches the teacher, 0 is no better than the base.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from engine.errors import SubnetScopeError
from engine.lora.lowrank import Factors
from engine.models.loading import LoadedModel

HELD_OUT = "held-out task"
SEEN = "seen task, unseen prompts"
VARIANTS = ("base", "teacher", "teachers' mean", "generated")


def response_loss(
    loaded: LoadedModel,
    pairs: Sequence[tuple[str, str]],
    factors: Mapping[str, Factors] | None = None,
    max_length: int = 256,
) -> float:
    """Mean NLL (nats per token) of each response's tokens given its prompt, over all pairs."""
    from engine.lora.live import apply_lora
    from engine.models.devices import input_device

    if not pairs:
        raise SubnetScopeError("no held-out examples to score")
    tokenizer = loaded.tokenizer
    device = input_device(loaded.model)
    nll, count = 0.0, 0
    with torch.inference_mode(), apply_lora(loaded, factors):
        for prompt, response in pairs:
            p_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
            r_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
            ids = (p_ids + r_ids)[:max_length]
            start = len(p_ids)
            if start >= len(ids) or start < 1:
                continue
            x = torch.tensor([ids], device=device)  # (1, L)
            logits = loaded.model(input_ids=x).logits[0, start - 1 : -1].float()  # (n_resp, V)
            target = x[0, start:]
            nll += F.cross_entropy(logits, target, reduction="sum").item()
            count += int(target.numel())
    if count == 0:
        raise SubnetScopeError("no held-out response has a token inside max_length")
    return nll / count


def to_factors(
    generated: Mapping[str, tuple[torch.Tensor, torch.Tensor]], scale: float, k: int = 0
) -> dict[str, Factors]:
    """One sample of a generator's batched output as the blender's Factors."""
    return {
        m: Factors(b[k].detach().float().cpu(), a[k].detach().float().cpu(), scale)
        for m, (a, b) in generated.items()
    }


def generate_factors(
    generator, encoder, prompts: Sequence[str], scale: float
) -> dict[str, Factors]:
    """The adapter for one prompt batch."""
    embeddings = np.asarray(encoder.encode(list(prompts)), dtype=np.float32)
    cond = torch.from_numpy(embeddings)[None]  # (1, N, cond_dim)
    with torch.no_grad():
        return to_factors(generator(cond), scale)


def _delta(loaded, run, base: np.ndarray, factors) -> np.ndarray:
    from engine.lora.deltas import mean_last_state

    states = mean_last_state(loaded, run.probes, factors, max_length=run.probe_max_length)
    return states.numpy() - base


def _cos(x: np.ndarray, y: np.ndarray) -> float:
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / denom) if denom > 0 else float("nan")


def evaluate_generator(
    loaded: LoadedModel, run, generator, encoder, config
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per (task, variant[, draw]); the summary averages the generated draws per task."""
    from engine.lora.generator.teachers import teacher_factors

    scale = run.alpha / run.rank
    held = set(config.held_out_tasks)
    base_state = np.asarray(run.base_state(), dtype=np.float32)
    anchor = {
        m: Factors(b.detach().float(), a.detach().float(), scale)
        for m, (a, b) in generator.anchor_factors().items()
    }
    rng = np.random.default_rng(config.seed + 1)
    rows = []
    for task, info in run.tasks.items():
        pairs = run.heldout_pairs(task)
        split = HELD_OUT if task in held else SEEN
        teacher = run.final(task)
        t_factors = {m: Factors(b, a, scale) for m, (a, b) in teacher_factors(teacher.path).items()}
        t_delta = run.delta(teacher.id)
        base_loss = response_loss(loaded, pairs, None, run.max_length)
        teacher_loss = response_loss(loaded, pairs, t_factors, run.max_length)
        gain = base_loss - teacher_loss

        head = {"task": task, "split": split}

        def row(
            variant: str,
            loss: float,
            delta: np.ndarray,
            draw: int | None = None,
            head=head,
            base_loss=base_loss,
            gain=gain,
            t_delta=t_delta,
        ) -> dict:
            recovery = (base_loss - loss) / gain if abs(gain) > 1e-9 else float("nan")
            return head | {
                "variant": variant,
                "draw": draw,
                "loss": loss,
                "recovery": recovery,
                "delta_cos": _cos(delta, t_delta),
                "delta_dist": float(np.linalg.norm(delta - t_delta)),
            }

        rows.append(row("base", base_loss, np.zeros_like(t_delta)))
        rows.append(row("teacher", teacher_loss, t_delta))
        mean_loss = response_loss(loaded, pairs, anchor, run.max_length)
        mean_delta = _delta(loaded, run, base_state, anchor)
        rows.append(row("teachers' mean", mean_loss, mean_delta))
        prompts = list(info["heldout_prompts"])
        for draw in range(config.eval_draws):
            take = rng.choice(len(prompts), size=min(config.n_prompts, len(prompts)), replace=False)
            factors = generate_factors(generator, encoder, [prompts[i] for i in take], scale)
            loss = response_loss(loaded, pairs, factors, run.max_length)
            delta = _delta(loaded, run, base_state, factors)
            rows.append(row("generated", loss, delta, draw))
    table = pd.DataFrame(rows)
    return table, summarize(table)


def summarize(table: pd.DataFrame) -> dict[str, Any]:
    """Per split: the mean over tasks of each variant's loss, recovery and δ cosine."""
    out: dict[str, Any] = {}
    for split, part in table.groupby("split", sort=False):
        per_task = part.groupby(["task", "variant"], sort=False)[
            ["loss", "recovery", "delta_cos"]
        ].mean()
        means = per_task.groupby(level="variant").mean()
        key = "held_out" if split == HELD_OUT else "seen"
        out[key] = {
            "tasks": sorted(part["task"].unique().tolist()),
            **{
                v: {c: float(means.loc[v, c]) for c in means.columns}
                for v in VARIANTS
                if v in means.index
            },
        }
    return out
