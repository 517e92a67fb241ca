"""Finished SparC3 runs as the dashboard reads them: candidates, neurons, evaluation, summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.attribution.config import DEMO_SPARC3, SUMMARY
from engine.attribution.pruning import load_neuron_list
from engine.attribution.scores import Selected
from engine.errors import SubnetScopeError


@dataclass(frozen=True)
class RunEntry:
    label: str
    path: Path  # the result folder
    job_id: str
    is_demo: bool
    model: str = ""  # the model the scores were computed on (the job's `model`)


@dataclass
class SparC3Result:
    path: Path
    summary: dict
    candidates: pd.DataFrame
    neurons: list[Selected]
    evaluation: pd.DataFrame | None
    causal: pd.DataFrame | None = None  # single ablations (causal_single.parquet), if measured
    causal_groups: pd.DataFrame | None = None

    @property
    def recovery(self) -> pd.DataFrame:
        """Precision / recall of each method's selection against each known truth."""
        return pd.DataFrame(self.summary.get("recovery", []))


def list_runs(limit: int = 100) -> list[RunEntry]:
    """Succeeded `prune.sparc3` jobs, the demo's first, then newest first."""
    from engine.jobs.finished import finished_results

    entries = []
    for found in finished_results("prune.sparc3", SUMMARY, DEMO_SPARC3, limit):
        p = found.params
        what = f"{p.get('method')} · {p.get('num_neurons')} neurons"
        label = (
            f"Demo: planted trigger · {what}"
            if found.is_demo
            else f"{p.get('model')} · {what} ({found.view.id})"
        )
        model = str(p.get("model", ""))
        entries.append(RunEntry(label, found.path, found.view.id, found.is_demo, model))
    return entries


def load_result(path: str | Path) -> SparC3Result:
    path = Path(path).expanduser()
    summary_file = path / SUMMARY
    if not summary_file.is_file():
        raise SubnetScopeError(f"no SparC3 result in '{path}' (no {SUMMARY})")
    evaluation = path / "evaluation.parquet"
    neurons, _ = load_neuron_list(path / "neurons.json")
    single, groups = path / "causal_single.parquet", path / "causal_groups.parquet"
    return SparC3Result(
        path=path,
        summary=json.loads(summary_file.read_text(encoding="utf-8")),
        candidates=pd.read_parquet(path / "candidates.parquet"),
        neurons=neurons,
        evaluation=pd.read_parquet(evaluation) if evaluation.is_file() else None,
        causal=pd.read_parquet(single) if single.is_file() else None,
        causal_groups=pd.read_parquet(groups) if groups.is_file() else None,
    )


def layer_distribution(candidates: pd.DataFrame, top: int) -> pd.DataFrame:
    """How many of the top-`top` candidates each layer holds."""
    head = candidates.head(top)
    counts = head.groupby("layer").size().rename("neurons").reset_index()
    return counts
