"""TensorBoard: a job's metrics as event files under `<job>/tensorboard/` (read back with
tensorboard's EventAccumulator), `report_to` for the training runs, and `python -m engine jobs
tensorboard` (the logdir spec it prints, the server it starts on 127.0.0.1)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine.cli import main
from engine.errors import SubnetScopeError
from engine.jobs import JobContext, get_job, submit, tensorboard_files, wait_job
from engine.jobs.tensorboard import (
    TB_DIR,
    logdir_spec,
    report_to,
    tag_for,
    trainer_report_to,
    wants_tensorboard,
)
from engine.paths import PROJECT_ROOT
from engine.training.config import CONFIGS, TrainConfig
from tests.job_support import hold_local_jobs


def read_board(logdir: Path) -> EventAccumulator:
    board = EventAccumulator(str(logdir))
    board.Reload()
    return board


def scalars(board: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in board.Scalars(tag)]


def test_report_to_names() -> None:
    assert report_to("tensorboard") == ["tensorboard"]
    assert report_to("none") == report_to("") == report_to(None) == report_to(3) == []
    assert report_to(" tensorboard, wandb ") == ["tensorboard", "wandb"]
    assert report_to(["wandb", "none"]) == ["wandb"]
    assert wants_tensorboard({"report_to": ["tensorboard"]})
    assert not wants_tensorboard({"report_to": "wandb"}) and not wants_tensorboard({})
    # The job writes TensorBoard itself: the trainer gets every other integration.
    assert trainer_report_to("tensorboard,wandb") == ["wandb"]
    assert trainer_report_to("none") == trainer_report_to("tensorboard") == []


def test_every_training_run_reports_to_tensorboard_by_default() -> None:
    from engine.jobs import load_kinds

    assert TrainConfig().report_to == "tensorboard"
    assert {cls().report_to for cls in CONFIGS.values()} == {"tensorboard"}
    training = {n: k for n, k in load_kinds().items() if n.startswith("train.")}
    assert len(training) >= 8
    assert {n: wants_tensorboard(k.defaults) for n, k in training.items()} == dict.fromkeys(
        training, True
    )


def test_tags_keep_the_series_of_one_metric_apart() -> None:
    assert tag_for("train/loss", {}) == "train/loss"
    assert tag_for("layer_fraction", {"layer": 3, "share": 0.25}) == "layer_fraction/layer=3"
    assert tag_for("heldout_loss", {"task": "add"}) == "heldout_loss/task=add"
    assert tag_for("x", {"flag": True}) == "x"


def test_metrics_become_readable_scalars(ctx: JobContext) -> None:
    logdir = ctx.open_tensorboard("train.rank1", {"steps": 3, "report_to": "tensorboard"})
    assert logdir == ctx.job_dir / TB_DIR
    for step in (1, 2, 3):
        ctx.metric("train/loss", 1.0 / step, step=step)
        ctx.metric("layer_fraction", 0.1 * step, step=step, layer=0, share=0.5)
    ctx.metric("perplexity", 12.5)  # no step: counted per tag
    ctx.metric("perplexity", 11.5)
    ctx.metric("heldout_loss", 2.0, step=4.0, task="add")
    ctx.report_resources({"rss_gb": 0.25, "peak_rss_gb": 0.5, "cpu_s": 3.0, "elapsed_s": 7.9})
    ctx.close()
    ctx.close()  # twice is harmless
    ctx.metric("after_close", 1.0)  # events only, no error
    assert len(tensorboard_files(ctx.job_dir)) == 1
    board = read_board(logdir)
    assert scalars(board, "train/loss") == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert scalars(board, "layer_fraction/layer=0") == [
        (1, pytest.approx(0.1)),
        (2, pytest.approx(0.2)),
        (3, pytest.approx(0.3)),
    ]
    assert scalars(board, "perplexity") == [(0, 12.5), (1, 11.5)]
    assert scalars(board, "heldout_loss/task=add") == [(4, 2.0)]
    assert scalars(board, "resources/peak_rss_gb") == [(7, 0.5)]
    assert "resources/elapsed_s" not in board.Tags()["scalars"]
    assert "after_close" not in board.Tags()["scalars"]
    params = board.Tensors("params")[0].tensor_proto.string_val[0].decode()
    assert params.startswith("**train.rank1**") and '"steps": 3' in params


SMALL = {"steps": 2, "batch_size": 2, "max_length": 32, "eval_texts": 2, "limit": 12}


@pytest.mark.slow
def test_a_custom_training_loop_writes_its_loss(ctx: JobContext, tiny_folder) -> None:
    """rank-1 merging has no TRL trainer: its loss reaches TensorBoard through ctx.metric."""
    from engine.training.jobs import train_rank1

    ctx.open_tensorboard()
    train_rank1({"model": tiny_folder(), **SMALL}, ctx)
    ctx.close()
    board = read_board(ctx.job_dir / TB_DIR)
    assert [step for step, _ in scalars(board, "train/loss")] == [1, 2]
    assert "heldout_ppl" in board.Tags()["scalars"]


@pytest.mark.slow
def test_a_trl_run_writes_one_copy_of_its_logs(ctx: JobContext, tiny_folder) -> None:
    """A TRL run's logs reach TensorBoard through the job's metrics, and only there: the
    trainer's own TensorBoardCallback (trainer/runs/) is not asked for a second copy."""
    from engine.training.jobs import train_lora

    ctx.open_tensorboard()
    train_lora({"model": tiny_folder(), **SMALL, "lora_rank": 2, "rank_every": 2}, ctx)
    ctx.close()
    board = read_board(ctx.job_dir / TB_DIR)
    assert [step for step, _ in scalars(board, "train/loss")] == [1, 2]
    assert {"train/learning_rate", "rank/effective", "heldout_ppl"} <= set(board.Tags()["scalars"])
    assert len(list(ctx.job_dir.rglob("events.out.tfevents.*"))) == 1  # in the whole folder


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> tuple[Path, str, str]:
    """In a cache of their own: a real local job reporting to TensorBoard, and a job that is
    only queued (it never ran: no event files). A job run without report_to writes none:
    tests/test_job_resources.py checks it."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(cache))
        board = submit(
            "diagnostics.sleep", {"seconds": 0.2, "steps": 4, "report_to": "tensorboard"}
        )
        assert wait_job(board.id, timeout=60).status.state == "succeeded"
        hold_local_jobs(mp)
        plain = submit("diagnostics.sleep", {"seconds": 0.1, "steps": 2})
    return cache, board.id, plain.id


def test_a_job_asking_for_tensorboard_writes_readable_event_files(jobs, monkeypatch) -> None:
    cache, board_id, plain_id = jobs
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(cache))
    view = get_job(board_id)
    (event_file,) = tensorboard_files(view.path)
    assert event_file.parent == view.path / TB_DIR
    board = read_board(event_file.parent)
    assert scalars(board, "step_value") == [(0, 0.0), (1, 1.0), (2, 4.0), (3, 9.0)]
    assert "resources/rss_gb" in board.Tags()["scalars"]
    assert not tensorboard_files(get_job(plain_id).path)


def test_jobs_tensorboard_prints_the_logdir_spec(jobs, monkeypatch, capsys) -> None:
    cache, board_id, plain_id = jobs
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(cache))
    path = get_job(board_id).path
    assert main(["jobs", "tensorboard", "--print"]) == 0
    assert capsys.readouterr().out.strip() == f"{board_id}:{path / TB_DIR}"
    assert main(["jobs", "tensorboard", board_id[:-2], "--dry"]) == 0  # a prefix is enough
    assert capsys.readouterr().out.strip() == f"{board_id}:{path / TB_DIR}"
    assert main(["jobs", "tensorboard", plain_id, "--print"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: job {plain_id} wrote no TensorBoard files (a job writes them when its params' "
        "report_to names tensorboard, the training jobs' default)"
    )
    two = logdir_spec([("a", Path("/x/a")), ("b", Path("/x/b"))])
    assert two == "a:/x/a/tensorboard,b:/x/b/tensorboard"
    with pytest.raises(SubnetScopeError, match="comma"):
        logdir_spec([("a", Path("/x,y/a"))])


def test_jobs_tensorboard_without_event_files_says_so(job_cache, capsys) -> None:
    assert main(["jobs", "tensorboard", "--print"]) == 1
    assert "no job has TensorBoard files yet" in capsys.readouterr().err


def test_jobs_tensorboard_serves_the_scalars_on_localhost(jobs) -> None:
    cache, board_id, _ = jobs
    server = subprocess.Popen(
        [sys.executable, "-m", "engine", "jobs", "tensorboard", board_id, "--port", "0"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "SUBNETSCOPE_CACHE": str(cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("TensorBoard for 1 job(s) at http://127.0.0.1:"), (
            line + server.stderr.read() if server.poll() is not None else line
        )
        port = int(line.split(" at ", 1)[1].split()[0].rstrip("/").rsplit(":", 1)[1])
        deadline, tags = time.monotonic() + 30, {}
        while not tags and time.monotonic() < deadline:  # the first load runs in the background
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/data/plugin/scalars/tags")
            tags = json.loads(connection.getresponse().read())
            connection.close()
            time.sleep(0.2)
        (run,) = tags
        assert run.startswith(board_id) and "step_value" in tags[run]
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
        server.stdout.close()
        server.stderr.close()
