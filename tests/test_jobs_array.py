"""Split jobs on the local backend: shards + reduce give the unsplit result; cancel; a failed
shard; GPUs asked of the local backend and of SLURM's sbatch file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engine.errors import SubnetScopeError
from engine.jobs import (
    JobContext,
    Resources,
    cancel_job,
    devices,
    get_job,
    job_result,
    split,
    submit,
    wait_job,
)
from engine.jobs.model import JobSpec
from engine.jobs.registry import get_kind
from engine.jobs.status_file import read_status, update_status
from tests.job_array_kinds import KIND

NUMBERS = [1, 2, 3, 4, 5, 6, 7]


@pytest.fixture
def jobs_env(job_cache, monkeypatch):
    monkeypatch.setenv("SUBNETSCOPE_JOB_MODULES", "tests.job_array_kinds")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # this machine shows no GPU, whatever it has
    import tests.job_array_kinds  # noqa: F401  (the kind, in this process too)

    return job_cache


def _squares(view) -> dict:
    return json.loads((view.path / "result" / "squares.json").read_text())


# --- the split mechanism, through real job processes --------------------------------------


def test_split_job_gives_the_unsplit_result(jobs_env) -> None:
    whole = submit(KIND, {"numbers": NUMBERS})
    parts = submit(KIND, {"numbers": NUMBERS}, shards=3)
    assert parts.spec.shards == 3
    shard_dirs = split.shard_dirs(parts.path)
    assert [d.name for d in shard_dirs] == [f"{parts.id}-s{i:03d}" for i in range(3)]
    whole, parts = wait_job(whole.id, timeout=60), wait_job(parts.id, timeout=60)
    assert parts.status.state == "succeeded", parts.status
    assert _squares(parts) == _squares(whole)
    assert [f["name"] for f in job_result(parts)["files"]] == ["squares.json"]
    assert (parts.status.fraction, parts.status.shards_done) == (1.0, 3)
    planned = [json.loads((d / "spec.json").read_text())["params"]["numbers"] for d in shard_dirs]
    assert planned == [[1, 2, 3], [4, 5], [6, 7]]
    assert all(read_status(d).state == "succeeded" for d in shard_dirs)
    assert parts.summary()["shards"] == 3


def test_more_shards_than_work_runs_one_per_item(jobs_env) -> None:
    view = submit(KIND, {"numbers": [2, 3]}, shards=8)
    assert view.spec.shards == 2
    assert _squares(wait_job(view.id, timeout=60))["total"] == 13


def test_a_failed_shard_fails_the_job_with_its_reason(jobs_env) -> None:
    view = submit(KIND, {"numbers": NUMBERS, "fail_on": 5}, shards=3)
    done = wait_job(view.id, timeout=60)
    assert done.status.state == "failed"
    assert done.status.message == "shard 2/3 failed: planted failure on 5"
    states = [read_status(d).state for d in split.shard_dirs(done.path)]
    assert states == ["succeeded", "failed", "cancelled"]  # the third never ran
    assert not (done.path / "result" / "squares.json").exists()


def test_cancel_stops_the_running_shard_and_the_rest(jobs_env) -> None:
    view = submit(KIND, {"numbers": NUMBERS, "pause": 2.0}, shards=3)
    first = split.shard_dirs(view.path)[0]
    for _ in range(600):
        if read_status(first).state == "running":
            break
        wait_job(view.id, timeout=0.05)
    assert read_status(first).state == "running"
    done = cancel_job(view.id, wait=True)
    assert done.status.state == "cancelled"
    assert [read_status(d).state for d in split.shard_dirs(view.path)] == ["cancelled"] * 3


def test_cancel_of_a_waiting_split_job_cancels_its_shards(jobs_env, monkeypatch) -> None:
    from tests.job_support import hold_local_jobs

    hold_local_jobs(monkeypatch)
    view = submit(KIND, {"numbers": NUMBERS}, shards=2)
    assert cancel_job(view.id).status.state == "cancelled"
    assert [read_status(d).state for d in split.shard_dirs(view.path)] == ["cancelled"] * 2


def test_parent_progress_counts_the_shards_done(jobs_env) -> None:
    views = []
    for state, fraction in (("succeeded", 1.0), ("running", 0.5), ("queued", 0.0)):
        views.append(
            type("V", (), {"status": type("S", (), {"state": state, "fraction": fraction})()})()
        )
    changes = split.progress_of(views, 3)
    assert changes["fraction"] == pytest.approx(split.REDUCE_SHARE * 1.5 / 3)
    assert (changes["shards_done"], changes["state"]) == (1, "running")
    assert changes["message"] == "1/3 shards done, 1 running"


@pytest.mark.parametrize("shards", [0, -1, True, 1001, 2.5])
def test_bad_shard_counts_are_one_sentence(jobs_env, shards) -> None:
    with pytest.raises(SubnetScopeError, match="shards must be a whole number from 1 to 1000"):
        submit(KIND, {"numbers": NUMBERS}, shards=shards)


def test_a_kind_that_does_not_split_says_so(jobs_env) -> None:
    with pytest.raises(SubnetScopeError, match="does not split into shards; the kinds that do:"):
        submit("diagnostics.sleep", {"seconds": 0}, shards=2)


def test_kinds_lists_the_splittable_ones(jobs_env, capsys) -> None:
    from engine.cli import main

    assert main(["jobs", "kinds"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for kind in ("sparsity.series", "ica.capture", "attribution.seeds", KIND):
        assert "[splits: --shards N]" in lines[kind]
    assert "[splits" not in lines["diagnostics.sleep"]


# --- GPUs ----------------------------------------------------------------------------------


def test_visible_gpus_reads_cuda_visible_devices_and_dev(tmp_path) -> None:
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == ["0", "1"]
    for none in ("", "-1", "NoDevFiles"):
        assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": none}) == []
    for name in ("nvidia10", "nvidia2", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert devices.visible_gpus({}, dev=tmp_path) == ["2", "10"]
    seen = devices.seen_devices({"CUDA_VISIBLE_DEVICES": "3", "SLURM_JOB_GPUS": "3"})
    assert seen == {"gpus": ["3"], "CUDA_VISIBLE_DEVICES": "3", "SLURM_JOB_GPUS": "3"}


def test_local_job_asking_for_a_gpu_on_a_machine_without_is_refused(jobs_env) -> None:
    with pytest.raises(SubnetScopeError, match=r"asks for 1 GPU but this machine shows none"):
        submit(KIND, {"numbers": [1]}, resources=Resources(gpus=1))
    assert not list((jobs_env / "jobs").iterdir())  # refused before any folder was written


def test_job_that_gets_no_gpu_fails_at_its_start_and_records_what_it_saw(
    jobs_env, monkeypatch
) -> None:
    """A job asked for a GPU and was handed none (a SLURM node without its GRES): it stops."""
    from engine.jobs import queue
    from engine.jobs.execute import exec_job

    monkeypatch.setattr(queue, "_start", lambda view: view)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    view = submit(KIND, {"numbers": [1]}, resources=Resources(gpus=1))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr("engine.jobs.execute._redirect_output", lambda path: None)
    monkeypatch.setattr("engine.jobs.execute._next_in_queue", lambda job_dir: None)
    assert exec_job(view.path) == 1
    status = read_status(view.path)
    assert status.message.startswith("the job asks for 1 GPU but this machine shows none")
    assert status.devices["gpus"] == [] and status.devices["CUDA_VISIBLE_DEVICES"] == ""


def test_job_records_the_gpus_it_saw(jobs_env) -> None:
    view = wait_job(submit(KIND, {"numbers": [1]}).id, timeout=60)
    assert view.status.devices["gpus"] == [] and view.status.devices["CUDA_VISIBLE_DEVICES"] == ""
    assert view.status.devices["torch_used_cuda"] is False  # the job process imports torch


def _sbatch(kind: str, res: Resources, **extra) -> str:
    from submitit.slurm.slurm import _make_sbatch_string

    from engine.jobs.runners import slurm_parameters

    return _make_sbatch_string("true", "/tmp/x", **slurm_parameters(kind, res, **extra))


def test_gpus_become_sbatch_gpus(jobs_env) -> None:
    text = _sbatch("k", Resources(cpus=2, gpus=2, mem_gb=3))
    assert "#SBATCH --gpus=2\n" in text and "--cpus-per-task=2" in text
    assert "gpus-per-node" not in text and "--partition" not in text
    assert "--gpus" not in _sbatch("k", Resources())


def test_slurm_json_picks_the_gpu_option_and_partition(jobs_env) -> None:
    config = {"gpu_option": "gres", "gpu_partition": "gpu", "partition": "cpu", "account": "lab"}
    (jobs_env / "slurm.json").write_text(json.dumps(config))
    text = _sbatch("k", Resources(gpus=1))
    assert "--gres=gpu:1" in text and "--partition=gpu" in text and "--account=lab" in text
    assert "--partition=cpu" in _sbatch("k", Resources())  # a CPU job: the default partition
    assert "--partition=mine" in _sbatch("k", Resources(gpus=1, partition="mine"))
    config["gpu_option"] = "gpus_per_node"
    (jobs_env / "slurm.json").write_text(json.dumps(config))
    assert "--gpus-per-node=1" in _sbatch("k", Resources(gpus=1))
    config["gpu_option"] = "tpus"
    (jobs_env / "slurm.json").write_text(json.dumps(config))
    with pytest.raises(SubnetScopeError, match="gpu_option 'tpus' is not one of"):
        _sbatch("k", Resources(gpus=1))


# --- the split kinds give their unsplit job's files ----------------------------------------


def _run_inline(root: Path, kind: str, params: dict, shards: int | None = None) -> Path:
    """A job run in this process as its process would (the local backend's code path)."""
    job_kind = get_kind(kind)
    full = {**job_kind.defaults, **params}
    planned = split.plan_shards(kind, full, shards) if shards else []
    name = f"{kind.replace('.', '-')}-{shards or 0}"
    spec = JobSpec(id=name, kind=kind, params=full, shards=len(planned))
    job_dir = root / name
    (job_dir / "result").mkdir(parents=True)
    (job_dir / "events.jsonl").touch()
    split.create_shards(job_dir, spec, planned)
    ctx = JobContext(job_dir, lambda **changes: update_status(job_dir, **changes))
    summary = split.run_here(spec, job_dir, ctx) if shards else job_kind.run(full, ctx)
    ctx.write_manifest(summary)
    return job_dir / "result"


def _same_results(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir() if p.name != "manifest.json")
    assert names == sorted(p.name for p in b.iterdir() if p.name != "manifest.json")
    for name in names:
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name))
        elif name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(a / name), np.load(b / name))
        else:
            assert json.loads((a / name).read_text()) == json.loads((b / name).read_text())
    summary = [json.loads((r / "manifest.json").read_text())["summary"] for r in (a, b)]
    assert summary[0] == summary[1]


def _run_folder(base: Path, run: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(base / "model.safetensors")
    name = next(n for n in state if n.endswith("mlp.up_proj.weight"))
    for step, cells in ((10, 2), (20, 5), (30, 9)):
        tuned = {k: v.clone() for k, v in state.items()}
        for i in range(cells):
            tuned[name][i, i] += 0.5
        tuned[name][0, 1] += torch.tensor(3e-6)  # under some seed τ, over others
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        save_file(tuned, folder / "model.safetensors")
        shutil.copy(base / "config.json", folder / "config.json")
    return run


@pytest.mark.slow
def test_split_sparsity_series_writes_the_unsplit_files(
    jobs_env, tiny_folder, tmp_path, monkeypatch
) -> None:
    base = Path(tiny_folder("llama"))
    run = _run_folder(base, tmp_path / "run")
    params = {"base": str(base), "run_dir": str(run)}
    assert [len(s["checkpoints"]) for s in split.plan_shards("sparsity.series", params, 2)] == [
        2,
        1,
    ]
    # Apart, in caches of their own: the split run must not read the unsplit run's diffs.
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "whole"))
    whole = _run_inline(tmp_path / "whole", "sparsity.series", params)
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "parts"))
    parts = _run_inline(tmp_path / "parts", "sparsity.series", params, shards=3)
    _same_results(whole, parts)
    assert len(pd.read_parquet(parts / "steps.parquet")) == 3
    shard = parts.parent / "shards" / "sparsity-series-3-s001" / "result" / "diffs.json"
    rows = json.loads(shard.read_text())["diffs"]
    assert {Path(r["checkpoint"]).name for r in rows} == {"checkpoint-20"}
    assert all(Path(r["cached"]).is_dir() for r in rows)  # what the reduce then reads


def test_split_ica_capture_concatenates_rows_in_text_order(jobs_env, tiny_folder, tmp_path) -> None:
    texts = tmp_path / "texts.txt"
    words = ["cat", "mat", "sun", "rain", "code", "tree", "sea", "sky", "map", "pen", "ink"]
    texts.write_text("\n\n".join(f"The {w} is {w * (i % 3 + 1)}." for i, w in enumerate(words)))
    params = {
        "model": tiny_folder("llama"),
        "datasets": [str(texts)],
        "samples_per_ds": 11,
        "layers": "0,1",
        "batch_size": 2,
        "max_length": 16,
    }
    ranges = [s["text_range"] for s in split.plan_shards("ica.capture", params, 3)]
    assert ranges == [[0, 4], [4, 8], [8, 11]]  # whole batches of 2 texts
    whole = _run_inline(tmp_path / "whole", "ica.capture", params)
    parts = _run_inline(tmp_path / "parts", "ica.capture", params, shards=3)
    _same_results(whole, parts)
    tokens = pd.read_parquet(parts / "tokens.parquet")
    assert tokens["text_index"].is_monotonic_increasing
    assert set(tokens["text_index"]) == set(range(11))


def test_cancelled_split_job_folder_shows_cancelled_shards(jobs_env) -> None:
    """get_job of a finished split job reads only folders: no shard is left active."""
    view = submit(KIND, {"numbers": NUMBERS, "pause": 5.0}, shards=2)
    cancel_job(view.id, wait=True)
    assert get_job(view.id).status.state == "cancelled"
    assert all(read_status(d).is_final for d in split.shard_dirs(view.path))


def test_split_attribution_seeds_averages_the_same_scores(jobs_env, tiny_folder, tmp_path) -> None:
    from engine.attribution.scores import load_scores

    texts = tmp_path / "texts.txt"
    texts.write_text("\n\n".join(f"Text number {i} about {w}." for i, w in enumerate("abcdefgh")))
    params = {
        "method": "wanda",
        "model": tiny_folder("llama"),
        "samples": str(texts),
        "limit": 3,
        "max_length": 16,
        "seeds": [0, 1, 2],
    }
    assert [s["seeds"] for s in split.plan_shards("attribution.seeds", params, 2)] == [
        [0, 1],
        [2],
    ]
    whole = _run_inline(tmp_path / "whole", "attribution.seeds", params)
    parts = _run_inline(tmp_path / "parts", "attribution.seeds", params, shards=3)
    names = sorted(p.name for p in parts.iterdir() if p.name != "manifest.json")
    assert names == ["scores.safetensors", *(f"seed{s}.safetensors" for s in (0, 1, 2))]
    for name in names:
        a, b = load_scores(whole / name), load_scores(parts / name)
        assert a.layers == b.layers
        for layer in a.layers:
            assert torch.equal(a.neuron[layer], b.neuron[layer])
        a.metadata.pop("path"), b.metadata.pop("path")
        assert a.metadata == b.metadata
    summaries = [json.loads((r / "manifest.json").read_text())["summary"] for r in (whole, parts)]
    assert summaries[0] == summaries[1] and summaries[0]["seeds"] == [0, 1, 2]
