"""A neuron's passport: what every view has computed about one (layer, neuron), from the cache.

Nothing is computed here beyond lookups and ranks: each section reads finished artifacts (ICA
templates, SparC3 runs, diffs, adapters, activation statistics). What no artifact covers yet is
listed with the job that would compute it.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.names import percent
from engine.neurons import catalog, tables
from engine.neurons.space import NeuronSpace, space_of

TOP_SHARE = 0.05  # a neuron in an artifact's top 5 % is called out in the findings


@dataclass(frozen=True)
class Missing:
    """A section no artifact covers yet, and the job that would fill it."""

    area: str
    what: str
    job_kind: str
    params: dict[str, Any]

    @property
    def command(self) -> str:
        params = shlex.quote(json.dumps(self.params))
        return f"python -m engine jobs submit {self.job_kind} --params {params}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "what": self.what,
            "job_kind": self.job_kind,
            "params": self.params,
            "command": self.command,
        }


@dataclass
class Passport:
    model: str
    layer: int
    neuron: int
    space: NeuronSpace
    ica: pd.DataFrame  # templates, component, key, weight, z, rank (by |weight| in the component)
    attribution: pd.DataFrame  # run, model, rank, of, R_general, R_target, differential, wanda...
    updates: pd.DataFrame  # diff, run, kind, step, final, criterion, up, gate, down, mean, ...
    adapters: pd.DataFrame  # adapter, model, up, gate, down, total, rank, of
    activation: dict[str, Any] | None
    snippets: pd.DataFrame
    missing: list[Missing] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"L{self.layer}.{self.neuron}"

    def findings(self) -> list[str]:
        """One line per view, in words: what a researcher asks first about this neuron."""
        lines = []
        for name, ica in self.ica.groupby("templates", sort=False):
            key = ica[ica["key"].astype(bool)]
            if key.empty:
                lines.append(f"In no ICA component's key neurons ({name}).")
                continue
            parts = [f"{int(r.component)} (z {r.z:+.1f})" for r in key.itertuples()]
            plural = "s" * (len(parts) > 1)
            lines.append(f"Key neuron of ICA component{plural} {', '.join(parts)} ({name}).")
        for r in self.attribution.itertuples():
            if pd.isna(r.rank):
                lines.append(f"Not among the {r.of} pruning candidates of '{r.run}'.")
                continue
            chosen = "selected" if r.selected else "not selected"
            lines.append(f"Pruning candidate #{r.rank} of {r.of} in '{r.run}' ({chosen}).")
        finals = self.updates[self.updates["final"]] if not self.updates.empty else self.updates
        for r in finals.itertuples():
            if r.mean == 0:
                lines.append(f"{r.kind} did not move it (run {r.run or r.diff}).")
                continue
            lines.append(
                f"{r.kind} moved it: {percent(r.mean)} of its weights changed (layer mean "
                f"{percent(r.layer_mean)}; {percent(r.top_share)} of neurons changed as much or "
                "more)."
            )
        writes = False
        for r in self.adapters.itertuples():
            if pd.isna(r.total):
                lines.append(
                    f"Adapter {r.adapter} targets no MLP projection of layer {self.layer}."
                )
            elif r.top_share <= TOP_SHARE:
                writes = True
                lines.append(
                    f"Adapter {r.adapter} writes into it: ‖ΔW‖ {r.total:.3g}, "
                    f"top {r.top_share:.1%} of neurons."
                )
        if self.adapters["total"].notna().any() and not writes:
            lines.append(
                f"No adapter writes into it more than most neurons "
                f"(none ranks it in its top {TOP_SHARE:.0%})."
            )
        if self.activation is not None:
            a = self.activation
            lines.append(
                f"On {a['dataset']}: mean {a['mean']:+.3g}, max {a['max']:.3g}, "
                f"rank {a['mean_abs_rank_in_layer']} of {self.space.widths[self.layer]} "
                "in its layer by mean |a|."
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        def records(table: pd.DataFrame) -> list[dict]:
            return json.loads(table.to_json(orient="records"))

        return {
            "model": self.model,
            "layer": self.layer,
            "neuron": self.neuron,
            "space": {
                "family": self.space.family,
                "layers": self.space.num_layers,
                "neurons": self.space.widths[self.layer],
            },
            "findings": self.findings(),
            "ica": records(self.ica),
            "attribution": records(self.attribution),
            "updates": records(self.updates),
            "adapters": records(self.adapters),
            "activation": self.activation,
            "snippets": records(self.snippets),
            "missing": [m.as_dict() for m in self.missing],
        }


def _share_at_or_above(values: pd.Series, value: float) -> float:
    """The share of neurons scoring at least `value`: 1/N for the top one."""
    return float((values >= value).sum()) / max(len(values), 1)


def _ica(space: NeuronSpace, layer: int, neuron: int) -> pd.DataFrame:
    rows = []
    for ref in catalog.templates(space):
        tpl = tables.templates(ref.path)
        mix = tables.mixing(ref.path)
        flat = tables.feature_index(tpl, space.widths, layer, neuron)
        for component in tpl.component_ids:
            key = neuron in tpl.components[component].get(layer, ())
            row = {
                "templates": ref.label,
                "component": component,
                "key": key,
                "size": tpl.size(component),
                "weight": math.nan,
                "z": math.nan,
                "rank": None,
            }
            if mix is not None and flat is not None:
                column = mix[:, component].astype(np.float64)
                w = float(column[flat])
                row["weight"] = w
                row["z"] = (w - column.mean()) / (column.std() or 1.0)
                row["rank"] = int((np.abs(column) > abs(w)).sum()) + 1
            rows.append(row)
    table = pd.DataFrame(
        rows, columns=["templates", "component", "key", "size", "weight", "z", "rank"]
    )
    if not table.empty:
        order = table.assign(_a=table["z"].abs().fillna(0)).sort_values(
            ["key", "_a"], ascending=False
        )
        table = order.drop(columns="_a").reset_index(drop=True)
    return table


def _attribution(space: NeuronSpace, layer: int, neuron: int) -> pd.DataFrame:
    rows = []
    for ref in catalog.pruning_runs(space):
        cands = tables.candidates(ref.path)
        hit = cands[(cands["layer"] == layer) & (cands["neuron"] == neuron)]
        if hit.empty:  # scored, but outside the candidates the run kept
            rows.append(
                {
                    "run": ref.label,
                    "model": ref.model,
                    "rank": None,
                    "of": len(cands),
                    "selected": False,
                    "job_id": ref.job_id,
                }
            )
            continue
        r = hit.iloc[0]
        rows.append(
            {
                "run": ref.label,
                "model": ref.model,
                "rank": int(r["rank"]),
                "of": len(cands),
                "R_general": float(r["R_general"]),
                "R_target": float(r["R_target"]),
                "differential": float(r["differential"]),
                "wanda": float(r["wanda"]) if "wanda" in r else math.nan,
                "wanda_rank": int(r["wanda_rank"]) if "wanda_rank" in r else None,
                "selected": (layer, neuron) in tables.selected(ref.path),
                "job_id": ref.job_id,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "run",
            "model",
            "rank",
            "of",
            "R_general",
            "R_target",
            "differential",
            "wanda",
            "wanda_rank",
            "selected",
            "job_id",
        ],
    )


def _updates(space: NeuronSpace, layer: int, neuron: int) -> pd.DataFrame:
    rows = []
    for ref in catalog.diffs(space):
        table = tables.diff_neurons(ref.path)
        hit = table[(table["layer"] == layer) & (table["neuron"] == neuron)]
        if hit.empty:
            continue
        r = hit.iloc[0]
        same_layer = table[table["layer"] == layer]
        rows.append(
            {
                "diff": ref.label,
                "run": ref.run_job,
                "kind": catalog.TRAIN_KINDS.get(ref.run_kind or "", "diff"),
                "step": ref.step,
                "final": ref.final,
                "criterion": ref.criterion,
                **{
                    role: float(r[role]) if role in r else math.nan
                    for role in ("up", "gate", "down")
                },
                "mean": float(r["mean"]),
                "layer_mean": float(same_layer["mean"].mean()),
                "top_share": _share_at_or_above(table["mean"], float(r["mean"])),
                "key": ref.key,
            }
        )
    columns = [
        "diff",
        "run",
        "kind",
        "step",
        "final",
        "criterion",
        "up",
        "gate",
        "down",
        "mean",
        "layer_mean",
        "top_share",
        "key",
    ]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["run", "criterion", "step"], kind="stable").reset_index(drop=True)


def _adapters(space: NeuronSpace, layer: int, neuron: int) -> pd.DataFrame:
    rows = []
    for ref in catalog.adapters(space):
        table = tables.adapter_neurons(ref.path, ref.model)
        hit = table[(table["layer"] == layer) & (table["neuron"] == neuron)]
        if hit.empty:
            continue
        r = hit.iloc[0]
        total = float(r["total"])
        ranked = not math.isnan(total)  # NaN: the adapter targets no MLP projection here
        rows.append(
            {
                "adapter": ref.name,
                "model": ref.model,
                **{role: float(r[role]) for role in ("up", "gate", "down")},
                "total": total,
                "rank": int((table["total"] > total).sum()) + 1 if ranked else None,
                "of": int(table["total"].notna().sum()),
                "top_share": _share_at_or_above(table["total"], total) if ranked else math.nan,
            }
        )
    return pd.DataFrame(
        rows, columns=["adapter", "model", "up", "gate", "down", "total", "rank", "of", "top_share"]
    )


def _activation(space: NeuronSpace, layer: int, neuron: int) -> tuple[dict | None, pd.DataFrame]:
    runs = catalog.activation_runs(space)
    if not runs:
        return None, pd.DataFrame(columns=["rank", "value", "left", "token", "right"])
    stats = tables.activation_stats(runs[0].path)
    row, snippets = stats.neuron(layer, neuron)
    row |= {
        "dataset": stats.meta.get("dataset"),
        "tokens": stats.meta.get("tokens"),
        "model": runs[0].model,
    }
    return row, snippets


def _missing(model: str, space: NeuronSpace, p: Passport) -> list[Missing]:
    from engine.attribution.config import DEMO_SPARC3
    from engine.ica.catalog import DEMO_PARAMS
    from engine.neurons.activations import KIND as ACTIVATIONS

    out = []
    if p.ica.empty:
        params = dict(DEMO_PARAMS) | {"model": model, "space": "mlp_neurons"}
        out.append(
            Missing(
                "ica",
                "No ICA templates over this layout's intermediate neurons.",
                "ica.build_templates",
                params,
            )
        )
    if p.attribution.empty:
        # The causal check and its score choice are made for the demo's planted behaviour; on
        # another model the run is the seed's own SparC3.
        params = dict(DEMO_SPARC3) if model == "demo" else {"model": model, "method": "lrp"}
        out.append(
            Missing(
                "pruning",
                "No SparC3 run (LRP / Wanda scores) on this layout.",
                "prune.sparc3",
                params,
            )
        )
    diffed = set(p.updates["run"].dropna()) if not p.updates.empty else set()
    runs = catalog.training_runs(space)
    for run in runs:
        if run.job_id in diffed:
            continue
        what = catalog.TRAIN_KINDS[run.kind]
        out.append(
            Missing(
                "updates",
                f"{what} run {run.job_id} has checkpoints but no diff yet.",
                "sparsity.series",
                {"base": str(run.result / "base"), "run_dir": str(run.result)},
            )
        )
    if p.updates.empty and not runs:
        out.append(
            Missing(
                "updates",
                "No fine-tuning run to diff: an RL run tracks its updates.",
                "train.grpo",
                {"model": model},
            )
        )
    if p.adapters.empty:
        out.append(
            Missing("adapter", "No LoRA adapter on this layout.", "train.lora", {"model": model})
        )
    if p.activation is None:
        out.append(
            Missing(
                "activations",
                "No activation statistics on a general corpus.",
                ACTIVATIONS,
                {"model": model, "dataset": "demo-general"},
            )
        )
    return out


def passport(model: str, layer: int, neuron: int) -> Passport:
    """Everything cached about neuron `neuron` of layer `layer` of `model` (and of the models
    sharing its layout)."""
    space = space_of(model)
    space.check(layer, neuron)
    activation, snippets = _activation(space, layer, neuron)
    p = Passport(
        model=model,
        layer=layer,
        neuron=neuron,
        space=space,
        ica=_ica(space, layer, neuron),
        attribution=_attribution(space, layer, neuron),
        updates=_updates(space, layer, neuron),
        adapters=_adapters(space, layer, neuron),
        activation=activation,
        snippets=snippets,
    )
    p.missing = _missing(model, space, p)
    return p
