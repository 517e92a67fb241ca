"""Base vs tuned attention (seed 003: what fine-tuning changes in local and global heads): the
tuned models on offer (training checkpoints, LoRA adapters), their head statistics read on the
base's token ids, and the per-head differences."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from engine.attention.capture import STATS, HeadStats, head_stats
from engine.errors import SubnetScopeError
from engine.models import LoadedModel

# Finished runs whose result folder holds full-weight `checkpoint-<step>/` folders.
TRAIN_KINDS = {"train.sft": "SFT", "train.grpo": "GRPO", "train.ppo": "PPO"}
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
RUN_BASE = "base"  # engine/training/runs.py saves the weights before training here
TOP_SHARE = 0.1  # change_by_kind counts each kind among the 10 % most-changed heads


@dataclass(frozen=True)
class TunedChoice:
    label: str
    kind: str  # "model" (a checkpoint folder: config + safetensors) | "adapter" (a PEFT folder)
    path: Path
    source: str = ""  # the base model the run or adapter was trained from, as its job named it
    # A run checkpoint's own saved base (`result/base/`: the weights before training, stored in
    # the run's precision like its checkpoints): what reference_stats compares it against.
    base: Path | None = None


def compare_heads(base: HeadStats, tuned: HeadStats, stat: str = "entropy") -> pd.DataFrame:
    """Per (layer, head): every statistic's base, tuned and delta (tuned − base) value; `change`
    = |Δ| of `stat` and `rank` its rank, 1 = the head whose `stat` changed most."""
    if stat not in STATS:
        raise SubnetScopeError(f"unknown statistic '{stat}'; use one of {', '.join(STATS)}")
    if base.window != tuned.window:
        raise SubnetScopeError(
            f"the two sides used different windows ({base.window} vs {tuned.window} tokens)"
        )
    keys = ["layer", "head"]
    merged = base.frame.merge(tuned.frame, on=keys, suffixes=("_base", "_tuned"), how="outer")
    if merged[[f"{s}_{side}" for s in STATS for side in ("base", "tuned")]].isna().any().any():
        raise SubnetScopeError("the base and the tuned model have different layers or heads")
    out = merged[keys].copy()
    out["kind"] = merged["kind_base"]
    for s in STATS:
        out[f"{s}_base"] = merged[f"{s}_base"]
        out[f"{s}_tuned"] = merged[f"{s}_tuned"]
        out[f"{s}_delta"] = merged[f"{s}_tuned"] - merged[f"{s}_base"]
    out["change"] = out[f"{stat}_delta"].abs()
    out["rank"] = out["change"].rank(method="first", ascending=False).astype(int)
    return out.sort_values(keys, ignore_index=True)


def change_by_kind(frame: pd.DataFrame, stat: str) -> pd.DataFrame:
    """Local vs global heads (rows of `compare_heads`): heads, mean Δ, mean and max |Δ| of `stat`,
    and how many of the 10 % most-changed heads (at least one) are of each kind."""
    if f"{stat}_delta" not in frame:
        raise SubnetScopeError(f"unknown statistic '{stat}'; use one of {', '.join(STATS)}")
    delta = frame[f"{stat}_delta"]
    top = max(1, round(TOP_SHARE * len(frame)))
    most = set(delta.abs().nlargest(top).index)
    rows = []
    for kind, idx in frame.groupby("kind").groups.items():
        d = delta.loc[idx]
        rows.append(
            {
                "kind": kind,
                "heads": len(idx),
                "mean_delta": float(d.mean()),
                "mean_abs_delta": float(d.abs().mean()),
                "max_abs_delta": float(d.abs().max()),
                "in_top": sum(i in most for i in idx),
                "top": top,
            }
        )
    return pd.DataFrame(rows)


def _run_base(run: Path) -> Path | None:
    base = run / RUN_BASE
    return base if (base / "config.json").is_file() else None


def _run_checkpoints(limit: int) -> list[TunedChoice]:
    from engine.jobs import list_jobs
    from engine.jobs.files import RESULT

    found = []
    for kind, name in TRAIN_KINDS.items():
        for view in list_jobs(kind=kind, states=("succeeded",), limit=limit):
            result = view.path / RESULT
            if not result.is_dir():
                continue
            steps = sorted(
                (int(m[1]), p)
                for p in result.iterdir()
                if (m := _CHECKPOINT.match(p.name)) and (p / "config.json").is_file()
            )
            source = str(view.spec.params.get("model", ""))
            base = _run_base(result)
            for step, path in steps:
                label = f"{name} {view.id} · step {step}"
                found.append(TunedChoice(label, "model", path, source, base))
    return found


def tuned_choices(source: str | None = None, limit: int = 100) -> list[TunedChoice]:
    """Checkpoints of finished SFT / GRPO / PPO runs (newest run first, steps in order), then ready
    LoRA adapters (engine.lora.list_adapters); with `source`, only those trained from it."""
    from engine.lora import list_adapters

    choices = _run_checkpoints(limit)
    choices += [
        TunedChoice(f"adapter {entry.name}", "adapter", entry.path, entry.source)
        for entry in list_adapters(limit)
        if entry.ready and entry.path is not None
    ]
    if source is not None:
        choices = [c for c in choices if c.source == source]
    return choices


def choice_of(path: str | Path, label: str | None = None) -> TunedChoice:
    """A tuned model from a typed folder: a PEFT adapter folder or a model (checkpoint) folder."""
    folder = Path(path).expanduser()
    if (folder / "adapter_config.json").is_file():
        return TunedChoice(label or f"adapter {folder.name}", "adapter", folder)
    if (folder / "config.json").is_file():
        base = _run_base(folder.parent) if _CHECKPOINT.match(folder.name) else None
        return TunedChoice(label or str(folder), "model", folder, base=base)
    raise SubnetScopeError(
        f"'{path}' is neither a PEFT adapter folder (adapter_config.json) nor a model folder "
        "(config.json)"
    )


def tuned_stats(
    base: LoadedModel, choice: TunedChoice, texts: list[str], **kwargs: Any
) -> HeadStats:
    """head_stats of the tuned side on the base's token ids. An adapter applies per call on the
    base (engine.lora.apply_lora); a checkpoint loads in the base's dtype (so the difference is
    the training's, not a precision's) with the base's tokenizer (checkpoints save none)."""
    from engine.lora import apply_lora, load_adapter
    from engine.models import load_model

    if choice.kind == "adapter":
        adapter = load_adapter(choice.path)
        with apply_lora(base, adapter.factors):
            return head_stats(base, texts, **kwargs)
    if choice.kind != "model":
        raise SubnetScopeError(f"unknown tuned kind '{choice.kind}'; use 'model' or 'adapter'")
    tuned = load_model(str(choice.path), dtype=base.dtype, tokenizer=base.tokenizer)
    return head_stats(tuned, texts, tokenizer=base.tokenizer, **kwargs)


def reference_stats(
    base: LoadedModel, choice: TunedChoice, texts: list[str], **kwargs: Any
) -> HeadStats:
    """What a tuned choice is compared against: a run checkpoint's own saved base (its weights
    before training, in the run's precision) where it has one, else the base model. A bf16 run's
    checkpoints against an fp32 base would count the bf16 rounding of every weight as a change:
    on the demo's SFT run that rounding moves head entropies more than the training does."""
    if choice.base is None:
        return head_stats(base, texts, **kwargs)
    saved = TunedChoice(f"{choice.label} (its base)", "model", choice.base)
    return tuned_stats(base, saved, texts, **kwargs)
