"""The neuron-passport workspace: a tiny Llama with an artifact of every area around neuron L1.5.

`built_workspace(root)` makes, inside succeeded job folders (no process started), ICA templates,
a SparC3 (Wanda) run, an SFT checkpoint that moved exactly L1.5 (its up and gate rows, its down
column) and its diff, a saved PEFT adapter writing only into L1.5's up row, and activation
statistics. Used by the passport, neuron CLI and passport browser tests.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from engine.jobs import JobContext, api, files
from engine.jobs.status_file import update_status
from tests.artifact_support import quick_sparc3, quick_templates, write_prose
from tests.job_support import hold_local_jobs
from tests.tiny import save_tiny_folder

LAYER, NEURON = 1, 5  # the planted neuron
OTHER = 7  # a neuron of the same layer nothing touched


def clear_caches() -> None:
    """Forget neuron spaces read from a path (module fixtures reuse paths across cache roots)."""
    from engine.neurons import space

    space.architecture_of.cache_clear()


def finished_job(kind: str, params: dict, make) -> str:
    """A succeeded job of `kind` whose result folder `make(result_dir, view)` fills."""
    view = api.submit(kind, params)
    make(view.path / files.RESULT, view)
    update_status(view.path, state="succeeded", fraction=1.0)
    return view.id


def _plant(model: torch.nn.Module) -> None:
    """Move every weight of neuron L1.5: its up and gate rows and its down column."""
    mlp = model.model.layers[LAYER].mlp
    with torch.no_grad():
        mlp.up_proj.weight[NEURON, :] += 0.5
        mlp.gate_proj.weight[NEURON, :] += 0.5
        mlp.down_proj.weight[:, NEURON] += 0.5


def _planted_adapter(model: torch.nn.Module, folder: Path, base: str) -> Path:
    """A PEFT LoRA on up_proj whose B is zero except L1.5's up row."""
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(
        copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=["up_proj"])
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name:
                p.normal_(0, 0.1)
            elif "lora_B" in name:
                p.zero_()
                if f"layers.{LAYER}.mlp.up_proj" in name:
                    p[NEURON].normal_(0, 0.1)
    peft_model.save_pretrained(folder)
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = base
    config_file.write_text(json.dumps(config, indent=2))
    return folder


@contextlib.contextmanager
def built_workspace(root: Path, run_kind: str = "train.sft"):
    """Build the workspace under `root` and point the cache there while the block runs; the
    checkpoint that moved L1.5 belongs to a `run_kind` job."""
    from engine.ica.jobs import TEMPLATES_FILE
    from engine.neurons.jobs import activations_job
    from engine.sparsity import diff

    model_dir = root / "models" / "tiny-llama"
    loaded = save_tiny_folder(model_dir)
    model = str(model_dir)
    prose = write_prose(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(root / "cache"))
        mp.setenv("SUBNETSCOPE_MODEL_ROOTS", str(root / "models"))
        hold_local_jobs(mp)
        clear_caches()

        def ica(result: Path, view) -> None:
            quick_templates(model, prose, result / TEMPLATES_FILE)

        def sparc3(result: Path, view) -> None:
            quick_sparc3(model, result)

        def checkpoint(result: Path, view) -> None:
            tuned = save_tiny_folder(result / "checkpoint-2").model
            _plant(tuned)
            tuned.save_pretrained(result / "checkpoint-2")

        def activations(result: Path, view) -> None:
            ctx = JobContext(view.path, lambda **kw: update_status(view.path, **kw))
            ctx.write_manifest(activations_job(dict(view.spec.params), ctx))

        ica_params = {"model": model, "components": 3, "datasets": [str(prose)]}
        templates = finished_job("ica.build_templates", ica_params, ica)
        pruning_params = {"model": model, "method": "wanda", "num_neurons": 8}
        pruning = finished_job("prune.sparc3", pruning_params, sparc3)
        sft = finished_job(run_kind, {"model": model}, checkpoint)
        tuned = root / "cache" / "jobs" / sft / files.RESULT / "checkpoint-2"
        assert tuned.is_dir(), "the job folder is not where the catalog looks"
        diffed = diff(model, tuned, cache=True)
        adapter = _planted_adapter(loaded.model, root / "cache" / "adapters" / "planted", model)
        acts_params = {"model": model, "dataset": str(prose), "samples": 10, "max_length": 32}
        acts = finished_job("neurons.activations", acts_params, activations)
        yield {
            "root": root,
            "model": model,
            "templates": templates,
            "pruning": pruning,
            "sft": sft,
            "diff": diffed,
            "adapter": adapter,
            "activations": acts,
            "prose": prose,
        }
    clear_caches()
