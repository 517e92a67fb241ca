"""A trained LoRA generator in a tmp workspace: tiny teachers and a generator run in-process as
succeeded jobs (no process started), for the blender's Generate view and its tests."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from engine.jobs import JobContext, api, files, get_kind
from engine.jobs.status_file import update_status
from tests.job_support import hold_local_jobs
from tests.tiny import save_tiny_folder

TASKS = ("add", "sub")
HELD_OUT = "sub"
# Seed 004's layout in a few steps on a tiny model: 2 checkpoints per task.
TEACHERS = {
    "tasks": ",".join(TASKS),
    "steps": 4,
    "checkpoint_every": 2,
    "batch_size": 2,
    "max_length": 48,
    "train_examples": 8,
    "heldout_examples": 4,
    "probe_prompts": 2,
    "template": "basic",
    "dtype": "fp32",
}
# encoder "base": the tiny model's own pooled states, so no sentence encoder is needed.
GENERATOR = {
    "held_out": HELD_OUT,
    "loss": "multitask",
    "encoder": "base",
    "steps": 3,
    "batch_size": 2,
    "n_prompts": 2,
    "hidden": 16,
    "eval_draws": 1,
    "dtype": "fp32",
}


def run_job(kind: str, params: dict[str, Any]) -> str:
    """Submit `kind` (held in the queue), run it in this process and mark it succeeded."""
    view = api.submit(kind, params)
    ctx = JobContext(view.path, lambda **kw: update_status(view.path, **kw))
    summary = get_kind(kind).run(dict(view.spec.params), ctx)
    ctx.write_manifest(summary)
    update_status(view.path, state="succeeded", fraction=1.0)
    return view.id


@contextlib.contextmanager
def inside(root: Path):
    """The workspace under `root` as the engine's cache and model roots, jobs held."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(root / "cache"))
        mp.setenv("SUBNETSCOPE_MODEL_ROOTS", str(root / "models"))
        hold_local_jobs(mp)
        yield


def build_generator_workspace(root: Path) -> dict[str, Any]:
    """A tiny Llama under root/models, teachers and a generator as jobs in root/cache (point
    SUBNETSCOPE_CACHE at it to read them)."""
    from engine.lora.generator.config import TEACHERS_KIND

    model = root / "models" / "tiny-llama"
    save_tiny_folder(model)
    with inside(root):
        teachers = run_job(TEACHERS_KIND, {**TEACHERS, "model": str(model)})
    workspace = {
        "root": root,
        "cache": root / "cache",
        "models": root / "models",
        "model": str(model),
        "teachers": teachers,
    }
    workspace["generator"] = add_generator(workspace)
    workspace["result"] = root / "cache" / "jobs" / workspace["generator"] / files.RESULT
    return workspace


def add_generator(workspace: dict[str, Any], **params: Any) -> str:
    """Another generator on the workspace's teachers (GENERATOR's options, `params` changed)."""
    from engine.lora.generator.config import GENERATOR_KIND

    with inside(workspace["root"]):
        return run_job(GENERATOR_KIND, {**GENERATOR, "teachers": workspace["teachers"], **params})


def add_ablation(workspace: dict[str, Any], configs: str = "weight_only,multitask") -> str:
    """A lora.generator_ablation on the workspace's teachers: 2 trials of each config."""
    from engine.lora.generator.jobs import ABLATION_KIND

    params = {**GENERATOR, "teachers": workspace["teachers"], "configs": configs, "trials": 2}
    with inside(workspace["root"]):
        return run_job(ABLATION_KIND, params)
