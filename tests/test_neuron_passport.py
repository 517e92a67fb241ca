"""A neuron passport on a tiny model gathers from artifacts of each area; neuron-set specs.

One workspace (module fixture): a tiny Llama folder (2 layers × 48 neurons) with ICA templates,
a SparC3 (Wanda) run, a diff of an SFT job's checkpoint that moved exactly neuron L1.5 (its up and
gate rows, its down column), a saved PEFT adapter writing only into L1.5's up row, and activation
statistics, each made by the real engine code inside a succeeded job folder (no process started).
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from engine.errors import SubnetScopeError
from engine.jobs import files
from tests.job_support import hold_local_jobs
from tests.passport_support import LAYER, NEURON, OTHER, built_workspace, finished_job


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with built_workspace(tmp_path_factory.mktemp("passport")) as built:
        yield built


# 1. a passport gathers from every area ---------------------------------------------------------
def test_passport_of_the_planted_neuron_reads_every_area(workspace):
    from engine.neurons.passport import passport

    p = passport(workspace["model"], LAYER, NEURON)
    assert p.name == "L1.5" and p.space.widths == (48, 48)

    assert not p.ica.empty
    assert {"key", "weight", "z"} <= set(p.ica.columns)
    assert p.ica["weight"].notna().all() and p.ica["z"].notna().all()  # the mixing matrix is read
    assert len(p.ica) == 3  # one row per component

    [attr] = p.attribution.to_dict("records")
    assert attr["of"] == 96  # a Wanda run ranks every neuron
    assert 1 <= attr["rank"] <= 96
    # the scores are the run's own, read here from its candidates file without the passport
    run = workspace["root"] / "cache" / "jobs" / workspace["pruning"] / files.RESULT
    cands = pd.read_parquet(run / "candidates.parquet")
    [row] = cands[(cands["layer"] == LAYER) & (cands["neuron"] == NEURON)].to_dict("records")
    assert attr["rank"] == row["rank"]
    for column in ("R_general", "R_target", "differential"):
        assert math.isfinite(attr[column]), column
        assert attr[column] == pytest.approx(row[column], rel=1e-12), column
    assert attr["job_id"] == workspace["pruning"]

    [upd] = p.updates.to_dict("records")
    assert upd["run"] == workspace["sft"] and upd["kind"] == "SFT" and upd["step"] == 2
    assert upd["final"]
    assert upd["up"] == pytest.approx(1.0)
    assert upd["gate"] == pytest.approx(1.0)
    assert upd["down"] == pytest.approx(1.0)
    assert upd["mean"] == pytest.approx(1.0)
    assert upd["top_share"] == pytest.approx(1 / 96)

    [ad] = p.adapters.to_dict("records")
    assert ad["adapter"] == "planted" and ad["model"] == workspace["model"]
    assert ad["rank"] == 1 and ad["up"] > 0 and ad["total"] == pytest.approx(ad["up"])

    assert p.activation is not None
    assert p.activation["layer"] == LAYER and p.activation["neuron"] == NEURON
    assert p.activation["dataset"] == str(workspace["prose"])
    assert 1 <= p.activation["mean_abs_rank_in_layer"] <= 48
    assert not p.snippets.empty and {"value", "token"} <= set(p.snippets.columns)

    assert p.missing == []
    findings = "\n".join(p.findings())
    assert "ICA component" in findings
    assert f"Pruning candidate #{attr['rank']} of 96" in findings
    assert "SFT moved it: 100.0% of its weights changed" in findings
    assert "Adapter planted writes into it" in findings
    assert f"On {workspace['prose']}" in findings

    out = json.loads(json.dumps(p.as_dict()))
    assert out["layer"] == LAYER and out["neuron"] == NEURON
    assert out["space"] == {"family": p.space.family, "layers": 2, "neurons": 48}
    assert out["missing"] == [] and out["activation"]["neuron"] == NEURON
    for area in ("ica", "attribution", "updates", "adapters", "snippets"):
        assert out[area], area


def test_an_untouched_neuron_reads_zero_updates(workspace):
    from engine.neurons.passport import passport

    p = passport(workspace["model"], LAYER, OTHER)
    [upd] = p.updates.to_dict("records")
    assert upd["up"] == 0 and upd["gate"] == 0 and upd["down"] == 0 and upd["mean"] == 0
    [ad] = p.adapters.to_dict("records")
    assert ad["total"] == 0 and ad["rank"] == 2  # below the planted neuron only
    findings = "\n".join(p.findings())
    assert "SFT did not move it" in findings
    assert "No adapter writes into it more than most neurons" in findings


# 2. nothing computed ---------------------------------------------------------------------------
def test_a_passport_with_nothing_cached_lists_each_missing_job(workspace, tmp_path, monkeypatch):
    from engine.neurons.passport import passport

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "empty"))
    p = passport(workspace["model"], LAYER, NEURON)
    assert p.ica.empty and p.attribution.empty and p.updates.empty and p.adapters.empty
    assert p.activation is None and p.snippets.empty
    kinds = {m.area: m.job_kind for m in p.missing}
    assert kinds == {
        "ica": "ica.build_templates",
        "pruning": "prune.sparc3",
        "updates": "train.grpo",
        "adapter": "train.lora",
        "activations": "neurons.activations",
    }
    from engine.jobs import get_kind

    for m in p.missing:
        assert m.command.startswith(f"python -m engine jobs submit {m.job_kind} --params ")
        assert m.params["model"] == workspace["model"]
        # every param is one its job kind takes: the listed command would start, not fail
        assert set(m.params) <= set(get_kind(m.job_kind).defaults), m
    assert p.findings() == []
    out = json.loads(json.dumps(p.as_dict()))
    assert [m["area"] for m in out["missing"]] == [m.area for m in p.missing]


def test_a_finished_run_without_a_diff_is_listed_missing(workspace, tmp_path, monkeypatch):
    from engine.neurons.passport import passport

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    hold_local_jobs(monkeypatch)
    run = finished_job(
        "train.sft",
        {"model": workspace["model"]},
        lambda result, view: (result / "checkpoint-1").mkdir(),
    )
    [m] = [m for m in passport(workspace["model"], LAYER, NEURON).missing if m.area == "updates"]
    assert m.job_kind == "sparsity.series" and run in m.what
    assert m.params["run_dir"].endswith(f"{run}/result")
    from engine.jobs import get_kind

    assert set(m.params) <= set(get_kind(m.job_kind).defaults)


def test_out_of_range_neurons_are_one_clear_error(workspace):
    from engine.neurons.passport import passport

    with pytest.raises(SubnetScopeError, match="neuron 48 is out of range: layer 1 has neurons"):
        passport(workspace["model"], LAYER, 48)
    with pytest.raises(SubnetScopeError, match="layer 2 is out of range"):
        passport(workspace["model"], 2, 0)


# 3. sets ---------------------------------------------------------------------------------------
def test_known_sets_has_one_per_artifact(workspace):
    from engine.neurons.sets import known_sets
    from engine.neurons.space import space_of

    sets = known_sets(space_of(workspace["model"]), top=5)
    areas = [s.area for s in sets]
    assert areas.count("ica") == 3
    assert {"ica", "pruning", "updates", "adapter"} == set(areas)
    by_area = {s.area: s for s in sets}
    assert len(by_area["pruning"]) == 5
    assert by_area["updates"].neurons == {(LAYER, NEURON)}  # only the planted neuron moved
    assert by_area["adapter"].neurons == {(LAYER, NEURON)}
    assert by_area["adapter"].spec == "adapter:5@planted"


def test_parse_set_reads_every_spec_form(workspace, tmp_path):
    from engine.neurons import tables
    from engine.neurons.sets import parse_set
    from engine.neurons.space import space_of

    space = space_of(workspace["model"])
    ica = parse_set("ica:0", space)
    assert ica.area == "ica" and ica.spec == "ica:0" and ica.layers == (0, 1)

    pruning = parse_set("pruning:5", space)
    result = workspace["root"] / "cache" / "jobs" / workspace["pruning"] / "result"
    top = tables.candidates(result).sort_values("rank").head(5)
    assert list(pruning.ranked) == list(zip(top["layer"], top["neuron"], strict=True))
    assert parse_set(f"pruning:5@{workspace['pruning']}", space).neurons == pruning.neurons

    updates = parse_set(f"updates:3@{workspace['sft']}", space)
    assert updates.ranked == ((LAYER, NEURON),) and updates.area == "updates"

    adapter = parse_set("adapter:5@planted", space)
    assert adapter.ranked == ((LAYER, NEURON),)

    listed = parse_set("list:1.5,0.2", space)
    assert listed.neurons == {(1, 5), (0, 2)} and listed.area == "list"

    file = tmp_path / "mine.json"
    file.write_text(json.dumps([{"layer": 1, "neuron": 5}, {"layer": 0, "neuron": 9}]))
    from_file = parse_set(f"list:{file}", space)
    assert from_file.neurons == {(1, 5), (0, 9)} and from_file.spec == "list:mine"

    # a pruned-neuron list as the pruning page exports it (neurons plus metadata)
    pruned = tmp_path / "pruned.json"
    entries = [{"layer": 0, "neuron": 3, "score": -1.0}]
    pruned.write_text(json.dumps({"metadata": {"method": "lrp"}, "neurons": entries}))
    assert parse_set(f"list:{pruned}", space).neurons == {(0, 3)}
    broken = tmp_path / "broken.json"
    broken.write_text("[{'layer': 1")
    with pytest.raises(SubnetScopeError, match="is not valid JSON"):
        parse_set(f"list:{broken}", space)


def test_mask_criteria_order_from_coarse_to_fine():
    from engine.neurons.sets import criterion_fineness

    labels = ["1e-05", "exact", "1e-06", "0.001"]
    assert sorted(labels, key=criterion_fineness) == ["0.001", "1e-05", "1e-06", "exact"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus:1", "is not a set spec"),
        ("ica:x", "name a component"),
        ("ica:99", "component"),
        ("pruning:0", "is not a positive count"),
        ("adapter:5", "name the adapter"),
        ("adapter:5@nope", "names 0 of the adapters"),
        ("list:1.x", "is not a neuron"),
        ("list:missing.json", "no neuron list at"),
    ],
)
def test_bad_specs_are_one_clear_error(workspace, spec, message):
    from engine.neurons.sets import parse_set
    from engine.neurons.space import space_of

    with pytest.raises(SubnetScopeError, match=message):
        parse_set(spec, space_of(workspace["model"]))


def test_a_list_outside_the_layout_fails_the_overlap(workspace):
    from engine.neurons.overlap import overlap_matrix
    from engine.neurons.sets import parse_set
    from engine.neurons.space import space_of

    space = space_of(workspace["model"])
    sets = [parse_set("pruning:5", space), parse_set("list:1.48,0.2", space)]
    with pytest.raises(SubnetScopeError, match="names neuron 1.48, outside this model's layers"):
        overlap_matrix(sets, space.widths)


def test_an_adapter_without_mlp_modules_writes_into_no_neuron(workspace, tmp_path, monkeypatch):
    """PEFT's default LoRA targets attention only: such an adapter has no ΔW on any neuron and
    must not be ranked first or called out as writing into it."""
    from engine.neurons.passport import passport
    from tests.lora_support import save_tiny_adapter
    from tests.tiny import tiny_model

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "adapters" / "attention-only"
    save_tiny_adapter(
        tiny_model("llama").model, folder, base=workspace["model"], targets=("q_proj", "v_proj")
    )
    p = passport(workspace["model"], LAYER, NEURON)
    [row] = p.adapters.to_dict("records")
    assert row["adapter"] == "attention-only"
    assert math.isnan(row["total"]) and row["rank"] is None  # not ranked
    findings = "\n".join(p.findings())
    assert "writes into it" not in findings
    assert f"attention-only targets no MLP projection of layer {LAYER}" in findings
    assert "No adapter writes into it more" not in findings
