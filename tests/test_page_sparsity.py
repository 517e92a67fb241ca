"""AppTest of the sparsity page on a planted pair and a planted run of three checkpoints."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.page_support import open_page
from tests.tiny import tiny_model

UP = "model.layers.0.mlp.up_proj.weight"  # 48×32: 4 weights moved by 0.5 at each of 3 steps
Q = "model.layers.1.self_attn.q_proj.weight"  # 32×32: 4 weights moved by 3e-6 from 1.0
UP_CHANGED, Q_CHANGED = 12, 4


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict[str, Path]:
    """models/base and models/tuned, and run/checkpoint-1..3 on the way from one to the other."""
    root = tmp_path_factory.mktemp("sparsity-page")
    model = tiny_model("llama").model
    state = model.state_dict()  # aliases the parameters
    with torch.no_grad():
        state[Q][0, :Q_CHANGED] = 1.0  # bf16's step at 1.0 is 2⁻⁷: a 3e-6 update is invisible
        model.save_pretrained(root / "models" / "base")
        for step in (1, 2, 3):
            state[UP][step - 1, :4] += 0.5
            model.save_pretrained(root / "run" / f"checkpoint-{step}")
        state[Q][0, :Q_CHANGED] = 1.0 + 3e-6
        model.save_pretrained(root / "models" / "tuned")
        half = tiny_model("llama").model.to(torch.bfloat16)
        half.save_pretrained(root / "models" / "base16")
        half.state_dict()[UP][:3, :4] += 0.5
        half.save_pretrained(root / "models" / "tuned16")
    return {
        "base": root / "models" / "base",
        "tuned": root / "models" / "tuned",
        "base16": root / "models" / "base16",
        "tuned16": root / "models" / "tuned16",
        "run": root / "run",
        "models": root / "models",
    }


@pytest.fixture
def page(planted, tmp_path, monkeypatch) -> AppTest:
    at = open_page(
        monkeypatch,
        "sparsity",
        cache=tmp_path / "cache",
        models=planted["models"],
        env={"SUBNETSCOPE_AUTO_DEMO": "0"},
        timeout=120,
    )
    [base] = [s for s in at.selectbox if s.label == "Model"]
    base.set_value(str(planted["base"])).run()
    assert not at.exception, at.exception
    return at


def _table(at: AppTest, *columns: str) -> pd.DataFrame:
    tables = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert tables, f"no table with {columns}"
    return tables[0]


def _cell(blocks: pd.DataFrame, layer: int, module: str) -> pd.Series:
    return blocks[(blocks["layer"] == layer) & (blocks["module"] == module)].iloc[0]


def _pick_tuned(at: AppTest, path: Path) -> AppTest:
    [tuned] = [s for s in at.selectbox if s.label == "Tuned model"]
    return tuned.set_value(str(path)).run()


def test_heatmap_shows_planted_fractions_and_criteria_switch(page, planted) -> None:
    at = _pick_tuned(page, planted["tuned"])
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.get("vega_lite_chart"), "no heatmap"
    blocks = _table(at, "layer", "module", "fraction")
    # The default criterion: the smallest τ (1e-6) sees both planted groups.
    assert _cell(blocks, 0, "mlp.up_proj")["changed"] == UP_CHANGED
    assert _cell(blocks, 0, "mlp.up_proj")["fraction"] == pytest.approx(UP_CHANGED / (48 * 32))
    assert _cell(blocks, 1, "self_attn.q_proj")["fraction"] == pytest.approx(Q_CHANGED / 32**2)
    assert blocks["changed"].sum() == UP_CHANGED + Q_CHANGED
    assert any(b.label == "CSV" for b in at.get("download_button"))

    at.segmented_control(key="sparsity_criterion").set_value("bf16-visible").run()
    assert not at.exception, at.exception
    blocks = _table(at, "layer", "module", "fraction")
    assert _cell(blocks, 1, "self_attn.q_proj")["changed"] == 0  # invisible in bf16
    assert _cell(blocks, 0, "mlp.up_proj")["changed"] == UP_CHANGED
    assert any("PULSE" in c.value and "25.0%" in c.value for c in at.caption)

    at.segmented_control(key="sparsity_criterion").set_value("τ").run()
    at.select_slider(key="sparsity_tau_1e-05_1e-06").set_value("1e-05").run()
    blocks = _table(at, "layer", "module", "fraction")
    assert _cell(blocks, 1, "self_attn.q_proj")["changed"] == 0
    assert blocks["changed"].sum() == UP_CHANGED


def test_localization_ranks_and_shells_views(page, planted) -> None:
    at = _pick_tuned(page, planted["tuned"])
    at.segmented_control(key="sparsity_view").set_value("Localization").run()
    assert not at.exception, at.exception
    metrics = _table(at, "gini", "entropy", "top_k")
    assert list(metrics["over"]) == ["blocks", "module types", "tracked tensors"]
    assert list(metrics["basis"]) == [
        "changed weights per block",
        "changed weights per block",
        "seed 000: per-tensor ‖ΔW‖_F",
    ]
    # Seed 000's basis: ‖ΔW‖_F of the 15 tracked 2-D weights (2 blocks × 7 and the untied
    # lm_head); only up_proj and q_proj of the planted pair moved.
    from engine.sparsity import DiffConfig, diff

    seed = metrics.iloc[2]
    expected = diff(planted["base"], planted["tuned"], DiffConfig(), cache=False)
    assert seed["n"] == 15 and seed["active"] == 2
    assert seed["gini"] == pytest.approx(expected.summary["localization_seed"]["gini"])
    assert any("compute_localization_summary" in c.value for c in at.caption)
    at.segmented_control(key="sparsity_view").set_value("Ranks").run()
    assert at.info  # ranks are off by default
    at.toggle(key="sparsity_ranks").set_value(True).run()
    assert not at.exception, at.exception
    ranks = _table(at, "rank", "effective_rank", "stable_rank")
    assert ranks.set_index("tensor").loc[Q, "rank"] == 1  # one row moved: rank 1
    at.segmented_control(key="sparsity_view").set_value("Shells").run()
    at.text_input(key="sparsity_shells").set_value("24, 48").run()
    assert not at.exception, at.exception
    shells = _table(at, "shell", "role", "fraction")
    assert set(shells["shell"]) == {0, 1}


def test_series_gives_a_coverage_curve(page, planted) -> None:
    at = page.radio(key="sparsity_tuned_mode").set_value("Run checkpoints").run()
    at.selectbox(key="sparsity_run").set_value("Folder…").run()
    at.text_input(key="sparsity_run_dir").set_value(str(planted["run"])).run()
    at.segmented_control(key="sparsity_view").set_value("Coverage").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    steps = _table(at, "step", "coverage")
    assert list(steps["step"]) == [1, 2, 3]
    assert list(steps["coverage"]) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert at.get("vega_lite_chart"), "no coverage chart"


def test_missing_folder_is_one_error(page) -> None:
    at = page.radio(key="sparsity_tuned_mode").set_value("Path").run()
    at.text_input(key="sparsity_tuned_path").set_value("/no/such/model").run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "/no/such/model" in at.error[0].value


def test_train_view_launches_or_explains(page) -> None:
    at = page.segmented_control(key="sparsity_view").set_value("Train").run()
    assert not at.exception, at.exception
    from engine.jobs import load_kinds

    if any(k.startswith("train.") for k in load_kinds()):
        assert any(b.label.startswith("Start") for b in at.button)
    else:
        assert any("train." in i.value for i in at.info)


def test_heatmap_follows_a_running_training_job(page, planted, tmp_path) -> None:
    import os
    import shutil

    from engine.jobs import JobSpec, JobStatus, JobStore
    from engine.jobs.files import SPEC, STATUS, write_json_atomic
    from engine.jobs.processes import start_tick
    from engine.jobs.status_file import update_status

    # A train.sft job "running" in this very process (alive, so it stays active), whose
    # result folder holds the planted checkpoints.
    store = JobStore()
    job_dir = store.root / "20260101-000000-train-sft-live00"
    shutil.copytree(planted["run"], job_dir / "result")
    spec = JobSpec(job_dir.name, "train.sft", {"model": str(planted["base"])})
    status = JobStatus(state="running", pid=os.getpid(), pid_start=start_tick(os.getpid()))
    write_json_atomic(job_dir / SPEC, spec.to_json())
    write_json_atomic(job_dir / STATUS, status.to_json())
    store.sync()

    at = page.radio(key="sparsity_tuned_mode").set_value("Run checkpoints").run()
    at.selectbox(key="sparsity_run").set_value(job_dir.name).run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.caption]
    assert any("Checkpoint 3 of a running run" in c for c in captions), captions
    up = _cell(_table(at, "layer", "module", "fraction"), 0, "mlp.up_proj")
    assert up["changed"] == 12  # the newest checkpoint: three rows of four

    update_status(job_dir, state="succeeded")
    at.run()
    assert not at.exception, at.exception
    assert not any("running run" in c.value for c in at.caption)


def _pick_base(at: AppTest, path: Path) -> AppTest:
    [base] = [s for s in at.selectbox if s.label == "Model"]
    return base.set_value(str(path)).run()


def _heatmap_spec(at: AppTest) -> dict:
    import json

    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        y = spec.get("encoding", {}).get("y", {})
        if y.get("field") == "module":
            return spec
    raise AssertionError("no block × module heatmap")


def test_fp32_checkpoints_open_on_tau_and_say_why_they_look_dense(page, planted) -> None:
    at = _pick_tuned(page, planted["tuned"])
    assert not at.exception, at.exception
    assert at.segmented_control(key="sparsity_criterion").value == "τ"
    notes = [i.value for i in at.info]
    assert any("fp32" in n and "bf16-visible" in n for n in notes), notes
    at.segmented_control(key="sparsity_criterion").set_value("bf16-visible").run()
    at.run()  # the user's choice stands across reruns with the same checkpoints
    assert at.segmented_control(key="sparsity_criterion").value == "bf16-visible"
    assert not any("fp32" in i.value and "dense" in i.value for i in at.info)


def test_bf16_checkpoints_open_on_the_exact_comparison(page, planted) -> None:
    at = _pick_base(page, planted["base16"])
    at = _pick_tuned(at, planted["tuned16"])
    assert not at.exception, at.exception
    assert at.segmented_control(key="sparsity_criterion").value == "exact"
    assert any("bf16 checkpoints" in c.value for c in at.caption)
    blocks = _table(at, "layer", "module", "fraction")
    assert _cell(blocks, 0, "mlp.up_proj")["changed"] == 12
    assert blocks["changed"].sum() == 12
    # bf16 weights against an fp32 base: both rounded to bf16 first.
    at = _pick_base(at, planted["base"])
    at = _pick_tuned(at, planted["tuned16"])
    assert at.segmented_control(key="sparsity_criterion").value == "bf16-visible"
    assert any("against an fp32 base" in c.value for c in at.caption)
    # Back to an fp32 pair: it opens on that precision's criterion again.
    at = _pick_base(at, planted["base"])
    at = _pick_tuned(at, planted["tuned"])
    assert at.segmented_control(key="sparsity_criterion").value == "τ"


def test_every_heatmap_row_and_column_is_labelled(page, planted) -> None:
    at = _pick_tuned(page, planted["tuned"])
    blocks = _table(at, "layer", "module", "fraction")
    spec = _heatmap_spec(at)
    y_axis = spec["encoding"]["y"]["axis"]
    x_axis = spec["encoding"]["x"]["axis"]
    assert sorted(y_axis["values"]) == sorted(blocks["module"].unique())
    assert y_axis["labelOverlap"] is False and y_axis["labelLimit"] == 0
    blocks_shown = {"other" if b < 0 else str(b) for b in blocks["layer"].unique()}
    assert set(x_axis["values"]) == blocks_shown and x_axis["labelOverlap"] is False


def test_reference_numbers_are_the_seed_scripts(page, planted) -> None:
    from engine.sparsity import DiffConfig, diff

    at = _pick_tuned(page, planted["tuned"])
    assert any("Seed's reference numbers" in c.value for c in at.caption)
    at.toggle(key="sparsity_reference").set_value(True).run()
    assert not at.exception, at.exception
    shown = _table(at, "τ", "fraction close to zero (script)")
    ref = diff(planted["base"], planted["tuned"], DiffConfig(reference=True), cache=False)
    expected = ref.summary["reference"]["close_fraction"]
    assert dict(zip(shown["τ"], shown["fraction close to zero (script)"], strict=True)) == expected
    assert any("check_sparsity.py" in e.label for e in at.expander)
    # In bf16 the 3e-6 updates at 1.0 vanish: only the up_proj rows are nonzero.
    layers = _table(at, "layer", "nonzero share (mean)").set_index("layer")
    assert layers.loc["1", "nonzero share (mean)"] == 0.0
    assert layers.loc["0", "nonzero share (mean)"] > 0


def test_coverage_view_shows_the_seeds_coverage_at_three_taus(page, planted) -> None:
    at = page.radio(key="sparsity_tuned_mode").set_value("Run checkpoints").run()
    at.selectbox(key="sparsity_run").set_value("Folder…").run()
    at.text_input(key="sparsity_run_dir").set_value(str(planted["run"])).run()
    at.segmented_control(key="sparsity_view").set_value("Coverage").run()
    assert not at.exception, at.exception
    seed = _table(at, "step", "tau", "coverage")
    assert sorted(seed["tau"].unique()) == [1e-7, 1e-6, 1e-5]
    for _, rows in seed.groupby("tau"):
        assert list(rows["coverage"]) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert any("analyze_sparse_subnetwork.py" in c.value for c in at.caption)


def test_run_checkpoints_diff_against_the_runs_own_base(page, planted, tmp_path) -> None:
    """A bf16 run whose base/ holds its weights before training: its checkpoints are diffed
    against that base/, not the sidebar's fp32 base model, and the page says so."""
    import shutil

    run = tmp_path / "bf16-run"
    shutil.copytree(planted["base16"], run / "base")
    shutil.copytree(planted["tuned16"], run / "checkpoint-1")
    at = page.radio(key="sparsity_tuned_mode").set_value("Run checkpoints").run()
    at.selectbox(key="sparsity_run").set_value("Folder…").run()
    at.text_input(key="sparsity_run_dir").set_value(str(run)).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("run's own base" in c.value and str(run / "base") in c.value for c in at.caption)
    # Both sides bf16: the page opens on exact, and sees only the run's 12 changed weights
    # (against the fp32 sidebar base, bf16-visible would add the 4 planted q_proj weights).
    assert at.segmented_control(key="sparsity_criterion").value == "exact"
    blocks = _table(at, "layer", "module", "fraction")
    assert _cell(blocks, 0, "mlp.up_proj")["changed"] == 12
    assert blocks["changed"].sum() == 12

    # A run without base/ is diffed against the sidebar's model, and the page says that too.
    shutil.rmtree(run / "base")
    at.text_input(key="sparsity_run_dir").set_value(str(run) + "/").run()
    assert not at.exception, at.exception
    assert any("no base/ folder" in c.value for c in at.caption)
    assert at.segmented_control(key="sparsity_criterion").value == "bf16-visible"
    blocks = _table(at, "layer", "module", "fraction")
    assert blocks["changed"].sum() == 12 + Q_CHANGED
