"""Neuron sets from every view, named by specs the CLI and the page share.

ica:C[@TEMPLATES]      component C's key neurons (templates: a job id or path; default the
                       first templates of this layout, the demo's first)
pruning[:N][@RUN]      the top N SparC3 candidates (differential order) of a run
updates[:N][@RUN]      the N neurons whose up / gate / down weights changed most (mean changed
                       share) in a run's last diffed checkpoint (RUN: a training job id or a
                       diff key)
adapter[:N]@NAME       the N neurons with the largest ‖ΔW‖ on their rows / column in an adapter
list:L.I,L.I,...       a user's neurons; list:FILE reads a JSON neuron list
                       ([{"layer": L, "neuron": I}, ...]) or lines of "L I" / "L.I" / "L,I"
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from engine.errors import SubnetScopeError
from engine.neurons import catalog, tables
from engine.neurons.overlap import NeuronSet
from engine.neurons.space import NeuronSpace

DEFAULT_TOP = 100
AREAS = ("ica", "pruning", "updates", "adapter", "list")
_SPEC = re.compile(r"^(?P<area>[a-z]+)(?::(?P<arg>[^@]*))?(?:@(?P<ref>.+))?$")


def _short(job_id: str | None) -> str:
    return job_id.rsplit("-", 1)[-1] if job_id else ""


def _top(table: pd.DataFrame, column: str, n: int) -> tuple[tuple[int, int], ...]:
    """The n neurons scoring highest on `column` (those above 0 only), strongest first."""
    ranked = table[table[column] > 0].sort_values(column, ascending=False, kind="stable").head(n)
    return tuple(zip(ranked["layer"].astype(int), ranked["neuron"].astype(int), strict=True))


def _names_it(name: str | None, ref: str) -> bool:
    return bool(name) and (name == ref or name.startswith(ref) or name.endswith(ref))


def _pick(refs: list, ref: str | None, what: str, names) -> object:
    if not refs:
        raise SubnetScopeError(f"no {what} for this model yet")
    if ref is None:
        return refs[0]
    hits = [r for r in refs if any(_names_it(name, ref) for name in names(r))]
    if len(hits) != 1:
        known = ", ".join(str(names(r)[0]) for r in refs[:6])
        raise SubnetScopeError(f"'{ref}' names {len(hits)} of the {what} here; known: {known}")
    return hits[0]


# --- one set per area ---------------------------------------------------------------------------
def ica_set(space: NeuronSpace, component: int, ref: str | None = None) -> NeuronSet:
    refs = catalog.templates(space)
    t = _pick(refs, ref, "ICA templates", lambda r: (r.job_id, str(r.path), str(r.path.parent)))
    tpl = tables.templates(t.path)
    tpl.check_components([component])
    spec = f"ica:{component}" + ("" if t is refs[0] else f"@{_short(t.job_id) or t.path}")
    return NeuronSet(
        spec,
        "ica",
        f"ICA component {component}",
        frozenset(tpl.neurons(component)),
        layers=tuple(tpl.layers),
        model=t.model,
        note=t.label,
    )


def pruning_set(space: NeuronSpace, n: int = DEFAULT_TOP, ref: str | None = None) -> NeuronSet:
    refs = catalog.pruning_runs(space)
    run = _pick(refs, ref, "SparC3 runs", lambda r: (r.job_id, str(r.path)))
    table = tables.candidates(run.path).sort_values("rank").head(n)
    ranked = tuple(zip(table["layer"].astype(int), table["neuron"].astype(int), strict=True))
    spec = f"pruning:{n}" + ("" if run is refs[0] else f"@{_short(run.job_id)}")
    return NeuronSet(
        spec,
        "pruning",
        f"top {n} pruning candidates",
        frozenset(ranked),
        model=run.model,
        note=run.label,
        ranked=ranked,
    )


def criterion_fineness(label: str) -> float:
    """Orders mask criteria from coarse to fine: τ labels by −τ; 'exact' (any stored change) and
    other non-numeric labels count as τ = 0, the finest."""
    try:
        return -float(label)
    except ValueError:
        return 0.0


def _final_diffs(space: NeuronSpace) -> list[catalog.DiffRef]:
    """One diff per run (its last diffed checkpoint, the finest criterion first), newest first."""
    picked: dict[str, catalog.DiffRef] = {}
    for d in catalog.diffs(space):
        owner = d.run_job or d.key
        best = picked.get(owner)
        rank = (d.step or 0, criterion_fineness(d.criterion))
        if best is None or rank > (best.step or 0, criterion_fineness(best.criterion)):
            picked[owner] = d
    return list(picked.values())


def updates_set(space: NeuronSpace, n: int = DEFAULT_TOP, ref: str | None = None) -> NeuronSet:
    refs = _final_diffs(space)
    d = _pick(refs, ref, "diffed runs", lambda r: (r.run_job, r.key))
    ranked = _top(tables.diff_neurons(d.path), "mean", n)
    spec = f"updates:{n}@{_short(d.run_job) or d.key[:8]}"
    what = catalog.TRAIN_KINDS.get(d.run_kind or "", "diff")
    return NeuronSet(
        spec,
        "updates",
        f"top {n} updated by {what}",
        frozenset(ranked),
        model=d.model,
        note=d.label,
        ranked=ranked,
    )


def adapter_set(space: NeuronSpace, name: str, n: int = DEFAULT_TOP) -> NeuronSet:
    refs = catalog.adapters(space)
    a = _pick(refs, name, "adapters", lambda r: (r.name, str(r.path)))
    ranked = _top(tables.adapter_neurons(a.path, a.model), "total", n)
    return NeuronSet(
        f"adapter:{n}@{a.name}",
        "adapter",
        f"top {n} ΔW of {a.name}",
        frozenset(ranked),
        model=a.model,
        note=str(a.path),
        ranked=ranked,
    )


def parse_neuron_list(text: str) -> frozenset[tuple[int, int]]:
    """Neurons from 'L.I, L.I', lines of 'L I' / 'L,I', or a JSON list of {layer, neuron}."""
    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
            return frozenset((int(x["layer"]), int(x["neuron"])) for x in items)
        except (ValueError, KeyError, TypeError) as exc:
            raise SubnetScopeError(f"not a neuron list: {exc}") from None
    found = set()
    for token in re.split(r"[;\n]+|,\s+|,(?=\d+[.\s])", text):
        token = token.strip()
        if not token or token.startswith("#"):
            continue
        parts = re.split(r"[.\s,:]+", token)
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise SubnetScopeError(f"'{token}' is not a neuron: write layer.neuron, e.g. 12.345")
        found.add((int(parts[0]), int(parts[1])))
    if not found:
        raise SubnetScopeError("the neuron list is empty")
    return frozenset(found)


def list_set(text_or_file: str, name: str | None = None) -> NeuronSet:
    """A user's neurons: typed (see `parse_neuron_list`), a pruned-neuron JSON list (read by
    engine.attribution.pruning.load_neuron_list), or a text file of 'L I' lines."""
    from engine.attribution.pruning import load_neuron_list

    path = Path(text_or_file).expanduser()
    if path.suffix in (".json", ".txt", ".csv") or path.is_file():
        if path.suffix == ".json":
            neurons = frozenset((s.layer, s.neuron) for s in load_neuron_list(path)[0])
        elif path.is_file():
            neurons = parse_neuron_list(path.read_text(encoding="utf-8"))
        else:
            raise SubnetScopeError(f"no neuron list at '{text_or_file}'")
        if not neurons:
            raise SubnetScopeError(f"the neuron list '{path}' is empty")
        name = name or path.stem
    else:
        neurons = parse_neuron_list(text_or_file)
    return NeuronSet(f"list:{name or text_or_file}", "list", name or "your list", neurons)


# --- specs --------------------------------------------------------------------------------------
def _int(value: str | None, default: int, spec: str) -> int:
    if value in (None, ""):
        return default
    if not value.isdigit() or int(value) < 1:
        raise SubnetScopeError(f"'{spec}': '{value}' is not a positive count")
    return int(value)


def parse_set(spec: str, space: NeuronSpace, top: int = DEFAULT_TOP) -> NeuronSet:
    """The neuron set a spec names (see the module docstring)."""
    spec = spec.strip()
    if spec.startswith("list:"):
        return list_set(spec[5:])
    match = _SPEC.match(spec)
    area = match["area"] if match else ""
    if area not in AREAS:
        raise SubnetScopeError(
            f"'{spec}' is not a set spec; use ica:C[@TEMPLATES], pruning[:N][@RUN], "
            "updates[:N][@RUN], adapter[:N]@NAME or list:L.I,..."
        )
    arg, ref = match["arg"], match["ref"]
    if area == "ica":
        if not arg or not arg.isdigit():
            raise SubnetScopeError(f"'{spec}': name a component, e.g. ica:3")
        return ica_set(space, int(arg), ref)
    if area == "pruning":
        return pruning_set(space, _int(arg, top, spec), ref)
    if area == "updates":
        return updates_set(space, _int(arg, top, spec), ref)
    if not ref:
        raise SubnetScopeError(f"'{spec}': name the adapter, e.g. adapter:100@demo-code")
    return adapter_set(space, ref, _int(arg, top, spec))


def known_sets(space: NeuronSpace, top: int = DEFAULT_TOP) -> list[NeuronSet]:
    """One set per thing this layout has: each ICA component of the first templates, each SparC3
    run's top candidates, each diffed run's top-updated neurons, each adapter's top-ΔW neurons."""
    sets: list[NeuronSet] = []
    refs = catalog.templates(space)
    if refs:
        for component in tables.templates(refs[0].path).component_ids:
            sets.append(ica_set(space, component))
    for run in catalog.pruning_runs(space):
        sets.append(pruning_set(space, top, run.job_id))
    for d in _final_diffs(space):
        sets.append(updates_set(space, top, d.run_job or d.key))
    for a in catalog.adapters(space):
        sets.append(adapter_set(space, a.name, top))
    return sets


def resolve_sets(
    specs: Sequence[str], space: NeuronSpace, top: int = DEFAULT_TOP
) -> list[NeuronSet]:
    """Sets from specs; 'all' expands to `known_sets`."""
    sets: list[NeuronSet] = []
    for spec in specs:
        sets += known_sets(space, top) if spec == "all" else [parse_set(spec, space, top)]
    return sets
