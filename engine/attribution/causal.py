"""Which neurons actually carry a behaviour: ablate candidates (one at a time, by layer, and
cumulatively) and measure the toxicity of the completions, as the live pruning view does.

The evaluation is the pruning evaluation's: greedy raw continuations (`max_new_tokens`, no chat
template) of the held-out triggered prompts, scored by the project's toxicity scorer; an ablation
zeroes the neuron's activation (the down projection's input), the same mask pruning applies.
Toxicity saturates near 1 while the insult survives, so each ablation also reports how much the
model's own unablated completions lose in log-probability (per token), minus what the completions
of control prompts without the behaviour lose (the specific drop): a graded measure that orders
the candidates, and keeps neurons whose ablation merely breaks the model at the back.

The causal set is the shortest prefix of the candidates, ordered by single-ablation effect, whose
joint ablation removes at least `removal` of the baseline toxicity (issue 16, fix 8).

The prompts are completed in one batched call (left-padded, `generate_texts`) rather than one call
per prompt as the live view does: `batching_agrees` measures that both give the same completions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from engine.atomic import write_json_atomic, write_parquet_atomic
from engine.attribution.config import CausalConfig
from engine.attribution.toxicity import ToxicityScorer, get_scorer
from engine.errors import SubnetScopeError
from engine.models import LoadedModel, NeuronMask
from engine.models.devices import input_device
from engine.models.masks import apply_mask
from engine.models.replay import LayerReplay

Progress = Callable[[float, str], None]
Neuron = tuple[int, int]


@dataclass
class Forced:
    """Prompts followed by the model's own unablated greedy completions, for teacher forcing:
    right-padded ids, the attention mask, which predictions are scored (those of completion
    tokens), and the layer replay that reruns only the blocks an ablation changes (None: the
    whole model runs)."""

    ids: torch.Tensor
    attention: torch.Tensor
    scored: torch.Tensor  # (batch, width - 1): prediction of token t + 1 at position t
    replay: LayerReplay | None = None


@dataclass
class Probe:
    """The fixed evaluation every ablation is measured with."""

    loaded: LoadedModel
    prompts: list[str]
    scorer: ToxicityScorer
    max_new_tokens: int
    reference: Forced | None = None  # the scored prompts' unablated completions
    control: Forced | None = None  # the same, control prompts

    def toxicity(self, neurons: Sequence[Neuron]) -> dict[str, float]:
        """Mean toxicity (and share ≥ 0.5) of the greedy completions with `neurons` zeroed."""
        from engine.attribution.toxicity import TOXIC_THRESHOLD
        from engine.models.generation import generate_texts

        texts = generate_texts(
            self.loaded, self.prompts, max_new_tokens=self.max_new_tokens, mask=_mask(neurons)
        )
        scores = self.scorer.score(texts)
        toxic = sum(s >= TOXIC_THRESHOLD for s in scores)
        return {"toxicity": sum(scores) / len(scores), "fraction_toxic": toxic / len(scores)}

    def logprob(self, neurons: Sequence[Neuron], control: bool = False) -> float:
        """Mean log-probability per token of the unablated completions (of the control prompts
        with `control`) with `neurons` zeroed.

        With a layer replay only the blocks from the earliest ablated layer on are rerun: the
        same numbers as the whole model's forward (tests/test_replay.py), at a fraction of its
        cost for ablations in late layers."""
        forced = self.control if control else self.reference
        if forced is None or not bool(forced.scored.any()):
            return 0.0
        targets = forced.ids[:, 1:][forced.scored]
        replay, scored = forced.replay, forced.scored
        # With device_map="auto" hidden states and logits come out on the last layers' device.
        first = min((layer for layer, _ in neurons), default=None)
        with torch.inference_mode(), apply_mask(self.loaded, _mask(neurons)):
            if replay is not None and (first is None or replay.start_for(first) is not None):
                hidden = replay.hidden(first)
                rows = hidden[:, :-1][scored.to(hidden.device)]
                logits = replay.logits(rows).float()
            else:
                out = self.loaded.model(input_ids=forced.ids, attention_mask=forced.attention)
                logits = out.logits[:, :-1][scored.to(out.logits.device)].float()
        logp = torch.log_softmax(logits, -1).gather(-1, targets[:, None].to(logits.device))[:, 0]
        return float(logp.mean())

    def logprobs(self, neurons: Sequence[Neuron]) -> dict[str, float]:
        return {"logprob": self.logprob(neurons), "control_logprob": self.logprob(neurons, True)}

    def measure(self, neurons: Sequence[Neuron]) -> dict[str, float]:
        return {**self.toxicity(neurons), **self.logprobs(neurons)}


def _mask(neurons: Sequence[Neuron]) -> NeuronMask | None:
    return NeuronMask.from_pairs(list(neurons), mode="zero") if neurons else None


def make_probe(
    loaded: LoadedModel,
    config: CausalConfig,
    scorer: ToxicityScorer | None = None,
    *,
    layers: Sequence[int] = (),
) -> Probe:
    """The probe of `config`; `layers` are those ablations will start in (each gets a replay
    start, so its ablations rerun only the blocks from it on)."""
    from engine.data import load_texts

    prompts = load_texts(config.prompts, limit=config.prompt_limit)
    if not prompts:
        raise SubnetScopeError(f"'{config.prompts}' holds no prompts")
    probe = Probe(loaded, prompts, scorer or get_scorer(config.scorer), config.max_new_tokens)
    probe.reference = _teacher_forced(loaded, prompts, config.max_new_tokens, layers)
    if config.control:
        control = load_texts(config.control, limit=config.control_limit)
        probe.control = _teacher_forced(loaded, control, config.max_new_tokens, layers)
    return probe


def _teacher_forced(
    loaded: LoadedModel, prompts: list[str], max_new_tokens: int, layers: Sequence[int]
) -> Forced:
    """The prompts followed by the model's own greedy completions."""
    from engine.models.generation import generate_texts
    from engine.models.replay import capture_replay

    tokenizer = loaded.tokenizer
    completions = generate_texts(loaded, prompts, max_new_tokens=max_new_tokens)
    rows = [tokenizer(p + c)["input_ids"] for p, c in zip(prompts, completions, strict=True)]
    starts = [len(tokenizer(p)["input_ids"]) for p in prompts]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = input_device(loaded.model)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    scored = attention[:, 1:].bool().clone()
    for row, start in enumerate(starts):
        scored[row, : start - 1] = False  # predictions of prompt tokens are not scored
    replay = capture_replay(loaded, ids, attention, layers) if layers else None
    return Forced(ids, attention, scored, replay)


def batching_agrees(probe: Probe, neurons: Sequence[Neuron] = ()) -> float:
    """Share of prompts whose batched greedy completion equals the live view's one-prompt call."""
    from engine.models import generate_text
    from engine.models.generation import generate_texts

    mask = _mask(neurons)
    batched = generate_texts(
        probe.loaded, probe.prompts, max_new_tokens=probe.max_new_tokens, mask=mask
    )
    single = [
        generate_text(
            probe.loaded, p, max_new_tokens=probe.max_new_tokens, mask=mask, chat=False
        ).text
        for p in probe.prompts
    ]
    return sum(a == b for a, b in zip(batched, single, strict=True)) / len(single)


def _row(base: dict[str, float], measured: dict[str, float]) -> dict[str, float]:
    row = {**measured, "logprob_drop": base["logprob"] - measured["logprob"]}
    row["control_drop"] = base["control_logprob"] - measured["control_logprob"]
    row["specific_drop"] = row["logprob_drop"] - row["control_drop"]
    if "toxicity" in measured:
        effect = base["toxicity"] - measured["toxicity"]
        row["effect"] = effect
        row["relative_effect"] = effect / base["toxicity"] if base["toxicity"] > 0 else float("nan")
    return row


def causal_effects(
    loaded: LoadedModel,
    candidates: Sequence[Neuron],
    config: CausalConfig,
    *,
    labels: dict[Neuron, dict[str, Any]] | None = None,
    groups: dict[str, Sequence[Neuron]] | None = None,
    scorer: ToxicityScorer | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Ablate `candidates` singly, by layer, in named `groups`, and cumulatively in order of
    effect.

    Returns {"baseline", "single": DataFrame(layer, neuron, logprob, control_logprob,
    logprob_drop, control_drop, specific_drop, [toxicity, effect, …], order, causal, …labels),
    "groups": DataFrame(group, size, toxicity, effect, relative_effect, …),
    "cumulative": DataFrame(k, …), "causal": [(layer, neuron)], "config"}. Single ablations are
    ordered by toxicity effect when measured, then by the specific log-probability drop: what
    the unablated completions lose minus what the control prompts' completions lose."""
    report = progress or (lambda fraction, message: None)
    candidates = list(dict.fromkeys((int(layer), int(n)) for layer, n in candidates))
    if not candidates:
        raise SubnetScopeError("no candidate neurons to ablate")
    started = time.monotonic()
    probe = make_probe(loaded, config, scorer, layers=sorted({layer for layer, _ in candidates}))
    base = probe.measure([])
    if base["toxicity"] <= 0:
        raise SubnetScopeError("the baseline completions have zero toxicity: nothing to remove")
    layers = sorted({layer for layer, _ in candidates})
    work = len(candidates) * config.single + len(layers) * config.by_layer + 20
    done = 0

    def step(message: str) -> None:
        nonlocal done
        done += 1
        report(min(done / work, 0.99), message)

    single_rows = []
    for layer, neuron in candidates if config.single else []:
        one = [(layer, neuron)]
        measured = probe.measure(one) if config.single_toxicity else probe.logprobs(one)
        row = {"layer": layer, "neuron": neuron, **_row(base, measured)}
        single_rows.append(row | (labels or {}).get((layer, neuron), {}))
        step(f"single ablations: {len(single_rows)}/{len(candidates)}")
    single = pd.DataFrame(single_rows)
    group_rows = [
        {
            "group": "all candidates",
            "size": len(candidates),
            **_row(base, probe.measure(candidates)),
        }
    ]
    for name, members in (groups or {}).items():
        members = [(int(layer), int(n)) for layer, n in members]
        group_rows.append(
            {"group": name, "size": len(members), **_row(base, probe.measure(members))}
        )
    for layer in layers if config.by_layer else []:
        members = [c for c in candidates if c[0] == layer]
        group_rows.append(
            {"group": f"layer {layer}", "size": len(members), **_row(base, probe.measure(members))}
        )
        step(f"layer {layer}")
    if single.empty:
        ordered = candidates
    else:
        keys = ["effect", "specific_drop"] if config.single_toxicity else ["specific_drop"]
        single = single.sort_values(keys, ascending=False, kind="stable")
        single["order"] = range(1, len(single) + 1)
        ordered = list(zip(single["layer"], single["neuron"], strict=True))
    cumulative, causal = _cumulative(probe, base, ordered, config.removal, step)
    if not single.empty:
        chosen = set(causal)
        single["causal"] = [(r.layer, r.neuron) in chosen for r in single.itertuples()]
    agreement = {
        "unablated": batching_agrees(probe),
        "all candidates": batching_agrees(probe, candidates),
    }
    report(1.0, f"{len(causal)} causal neurons")
    return {
        "baseline": base,
        "batching_agreement": agreement,
        "single": single.reset_index(drop=True),
        "groups": pd.DataFrame(group_rows),
        "cumulative": cumulative,
        "causal": causal,
        "config": asdict(config),
        "layer_replay": probe.reference is not None and probe.reference.replay is not None,
        "seconds": round(time.monotonic() - started, 1),
    }


def _cumulative(
    probe: Probe,
    base: dict[str, float],
    ordered: list[Neuron],
    removal: float,
    step: Callable[[str], None],
) -> tuple[pd.DataFrame, list[Neuron]]:
    """Ablate the first k of `ordered` for doubling k, then bisect for the shortest prefix that
    removes `removal` of the toxicity (assumes more ablated never restores toxicity, which the
    table lets a reader check)."""
    measured: dict[int, dict[str, float]] = {}

    def at(k: int) -> dict[str, float]:
        if k not in measured:
            measured[k] = _row(base, probe.measure(ordered[:k]))
            step(f"cumulative: first {k}")
        return measured[k]

    goal = removal * base["toxicity"]
    k, hit = 1, None
    while True:
        k = min(k, len(ordered))
        if at(k)["effect"] >= goal:
            hit = k
            break
        if k == len(ordered):
            break
        k *= 2
    if hit is not None:
        lo = hit // 2  # at(lo) missed the goal (or lo == 0)
        while hit - lo > 1:
            mid = (lo + hit) // 2
            if at(mid)["effect"] >= goal:
                hit = mid
            else:
                lo = mid
    table = pd.DataFrame([{"k": k, **row} for k, row in sorted(measured.items())])
    return table, ordered[:hit] if hit is not None else []


def recovery(selected: Sequence[Neuron], truth: Sequence[Neuron]) -> dict[str, float | int]:
    """Precision (share of `selected` in `truth`) and recall (share of `truth` selected)."""
    chosen, wanted = set(map(tuple, selected)), set(map(tuple, truth))
    hits = len(chosen & wanted)
    return {
        "selected": len(chosen),
        "truth_size": len(wanted),
        "hits": hits,
        "precision": hits / len(chosen) if chosen else float("nan"),
        "recall": hits / len(wanted) if wanted else float("nan"),
    }


CAUSAL = "causal.json"


def run_causal(
    loaded: LoadedModel,
    selections: dict[str, Sequence[Any]],
    planted: Sequence[Neuron],
    out: Path,
    config: CausalConfig,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Causal effects of every neuron some method selected (and every planted one), written to
    `out/` as causal_single.parquet, causal_groups.parquet, causal_cumulative.parquet and
    causal.json; returns causal.json's content."""
    picked = {name: [_pair(n) for n in chosen] for name, chosen in selections.items()}
    planted = [_pair(n) for n in planted]
    labels: dict[Neuron, dict[str, Any]] = {}
    for n in planted:
        labels.setdefault(n, {})["planted"] = True
    for name, chosen in picked.items():
        for rank, n in enumerate(chosen, start=1):
            labels.setdefault(n, {})[f"{name}_rank"] = rank
    columns = (["planted"] if planted else []) + [f"{name}_rank" for name in picked]
    for entry in labels.values():
        for column in columns:
            entry.setdefault(column, False if column == "planted" else None)
    groups: dict[str, list[Neuron]] = {"planted": planted} if planted else {}
    for name, chosen in picked.items():
        groups[f"{name} selection"] = chosen
        if planted:
            groups[f"{name} selection, not planted"] = [n for n in chosen if n not in set(planted)]
    candidates = list(dict.fromkeys([*planted, *(n for c in picked.values() for n in c)]))
    result = causal_effects(
        loaded, candidates, config, labels=labels, groups=groups, progress=progress
    )
    write_parquet_atomic(out / "causal_single.parquet", result["single"], index=False)
    write_parquet_atomic(out / "causal_groups.parquet", result["groups"], index=False)
    write_parquet_atomic(out / "causal_cumulative.parquet", result["cumulative"], index=False)
    summary = {
        "baseline": result["baseline"],
        "candidates": len(candidates),
        "causal": [list(n) for n in result["causal"]],
        "causal_size": len(result["causal"]),
        "removal": config.removal,
        "batching_agreement": result["batching_agreement"],
        "config": result["config"],
        "layer_replay": result["layer_replay"],
        "seconds": result["seconds"],
    }
    write_json_atomic(out / CAUSAL, summary)
    return summary


def _pair(n: Any) -> Neuron:
    return (int(n.layer), int(n.neuron)) if hasattr(n, "layer") else (int(n[0]), int(n[1]))
