"""Finished masked-SFT runs side by side: new-task gain and forgetting (seed 001)."""

from __future__ import annotations

import json

import pandas as pd

from engine.jobs import list_jobs
from engine.jobs.files import RESULT

COLUMNS = [
    "job",
    "group",
    "mask_mode",
    "space",
    "components",
    "anti_drift",
    "masked_neurons",
    "steps",
    "task_ppl_before",
    "task_ppl_after",
    "general_ppl_before",
    "general_ppl_after",
    "task_gain",
    "forgetting",
    "final_loss",
    "seconds",
    "adapter",
]


def masked_runs(limit: int = 200) -> pd.DataFrame:
    """One row per succeeded `train.sft_masked` job, newest first."""
    rows = []
    for view in list_jobs(kind="train.sft_masked", states=("succeeded",), limit=limit):
        path = view.path / RESULT / "run.json"
        if not path.is_file():
            continue
        run = json.loads(path.read_text(encoding="utf-8"))
        rows.append(
            {
                "job": view.id,
                "group": run.get("group") or "",
                "mask_mode": run["mask_mode"],
                # runs from before spaces were recorded masked the intermediate neurons
                "space": run.get("space") or ("mlp_neurons" if run.get("components") else ""),
                "components": ",".join(map(str, run.get("components") or [])),
                "anti_drift": bool(run.get("anti_drift")),
                "masked_neurons": run.get("masked_neurons", 0),
                "steps": run["steps"],
                "task_ppl_before": run["before"]["task_ppl"],
                "task_ppl_after": run["after"]["task_ppl"],
                "general_ppl_before": run["before"]["general_ppl"],
                "general_ppl_after": run["after"]["general_ppl"],
                "task_gain": run["task_gain"],
                "forgetting": run["forgetting"],
                "final_loss": run.get("final_loss"),
                "seconds": run.get("seconds"),
                "adapter": run.get("output"),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def comparison_long(runs: pd.DataFrame) -> pd.DataFrame:
    """Long form for a grouped bar chart: run × (task ppl, general ppl) × (before, after)."""
    rows = []
    for _, run in runs.iterrows():
        label = f"{run['mask_mode']}{' +AD' if run['anti_drift'] else ''} · {run['job'][-6:]}"
        for metric in ("task", "general"):
            for when in ("before", "after"):
                rows.append(
                    {
                        "run": label,
                        "metric": f"{metric} perplexity",
                        "when": when,
                        "value": run[f"{metric}_ppl_{when}"],
                    }
                )
    return pd.DataFrame(rows, columns=["run", "metric", "when", "value"])
