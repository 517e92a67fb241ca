"""The teachers job on a tiny model: seed 004's folder layout and manifest, checkpoints that PEFT
and engine.lora load, one shared LoRA init, falling held-out losses, and the DeltaCache's Δ equal
to mean_last_state(adapter) − mean_last_state(base)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.errors import SubnetScopeError
from engine.jobs import JobContext
from engine.lora.delta_cache import DeltaCache
from tests.job_support import events_of
from tests.tiny import save_tiny_folder

TASKS = ("add", "upper")
PARAMS = {
    "tasks": ",".join(TASKS),
    "steps": 4,
    "checkpoint_every": 2,
    "train_examples": 16,
    "heldout_examples": 4,
    "probe_prompts": 2,
    "lr": 1e-2,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One teachers run (2 tasks × 4 steps, a checkpoint every 2) shared by the tests."""
    from engine.training.jobs import train_lora_teachers

    root = tmp_path_factory.mktemp("teachers")
    folder = root / "tiny"
    save_tiny_folder(folder, "llama")
    job_dir = root / "job"
    job_dir.mkdir()
    (job_dir / "events.jsonl").touch()
    ctx = JobContext(job_dir, lambda **kw: None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(root / "cache"))
        summary = train_lora_teachers({"model": str(folder), **PARAMS}, ctx)
    checkpoints = ctx.result_dir / "checkpoints"
    manifest = json.loads((checkpoints / "manifest.json").read_text())
    return {
        "ctx": ctx,
        "folder": str(folder),
        "summary": summary,
        "root": checkpoints,
        "manifest": manifest,
    }


def test_layout_and_manifest(run):
    root, manifest = run["root"], run["manifest"]
    ids = [f"{t}_{i:03d}" for t in TASKS for i in range(2)]
    for adapter_id in ids:
        folder = root / adapter_id.rsplit("_", 1)[0] / adapter_id
        assert {"adapter_model.safetensors", "adapter_config.json", "prompts.json"} <= {
            p.name for p in folder.iterdir()
        }
    assert manifest["format"] == "subnetscope-lora-teachers/1"
    assert manifest["model"] == run["folder"] and manifest["dtype"] == "float32"
    assert manifest["rank"] == 4 and manifest["alpha"] == 8.0
    assert manifest["target_modules"] == ["q_proj", "v_proj"]
    assert manifest["modules"] == [
        f"model.layers.{layer}.self_attn.{kind}"
        for layer in (0, 1)
        for kind in ("q_proj", "v_proj")
    ]
    assert manifest["max_length"] == 64 and manifest["template"] == "auto"
    assert len(manifest["probes"]) == 2 * len(TASKS)
    assert all("### Response:" in p and p.endswith("\n") for p in manifest["probes"])  # prompts
    assert list(manifest["tasks"]) == list(TASKS)
    for name, task in manifest["tasks"].items():
        assert task["family"] == {"add": "arithmetic", "upper": "text-format"}[name]
        assert len(task["train_prompts"]) == 16 and len(task["heldout_prompts"]) == 4
        assert len(task["heldout_texts"]) == 4
        assert not set(task["train_prompts"]) & set(task["heldout_prompts"])
        triples = zip(
            task["heldout_prompts"], task["heldout_texts"], task["heldout_pairs"], strict=True
        )
        for prompt, text, (formatted, response) in triples:
            assert prompt in formatted and formatted + response == text and response
    assert [(a["id"], a["task"], a["idx"], a["step"], a["path"]) for a in manifest["adapters"]] == [
        (i, i.rsplit("_", 1)[0], int(i[-1]), 2 * (int(i[-1]) + 1), f"{i.rsplit('_', 1)[0]}/{i}")
        for i in ids
    ]
    assert run["summary"]["tasks"] == list(TASKS) and run["summary"]["adapters"] == 4
    assert run["summary"]["dtype"] == "float32" and run["summary"]["seconds"] > 0


def test_prompts_json_lists_what_was_trained_so_far(run):
    root, manifest = run["root"], run["manifest"]
    for name in TASKS:
        first = json.loads((root / name / f"{name}_000" / "prompts.json").read_text())
        last = json.loads((root / name / f"{name}_001" / "prompts.json").read_text())
        assert (first["task"], first["step"], last["step"]) == (name, 2, 4)
        assert len(first["prompts"]) == 2 * 4 and len(last["prompts"]) == 4 * 4  # batch 4
        assert last["prompts"][:8] == first["prompts"]
        assert set(last["prompts"]) <= set(manifest["tasks"][name]["train_prompts"])


def test_checkpoints_load_in_peft_and_engine_lora(run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.lora import load_adapter

    ids = torch.tensor([[5, 6, 7, 8]])
    for row in run["manifest"]["adapters"]:
        folder = run["root"] / row["path"]
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == run["folder"]
        base = AutoModelForCausalLM.from_pretrained(run["folder"])
        model = PeftModel.from_pretrained(base, folder)
        with torch.no_grad():
            tuned = model(input_ids=ids).logits
            with model.disable_adapter():
                plain = model(input_ids=ids).logits
        assert not torch.allclose(tuned, plain)
        adapter = load_adapter(folder)
        assert list(adapter.factors) == run["manifest"]["modules"]
        assert all(f.rank == 4 and f.scale == 2.0 for f in adapter.factors.values())


def test_every_task_starts_from_the_same_init(run):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.lora import load_adapter
    from engine.training.config import LoRARunConfig
    from engine.training.lora_runs import lora_config, peft_factors

    def init(seed: int) -> dict[str, torch.Tensor]:
        base = AutoModelForCausalLM.from_pretrained(run["folder"])
        torch.manual_seed(seed)
        config = LoRARunConfig(lora_rank=4, lora_alpha=8.0, target_modules="q_proj,v_proj")
        return {p: f.a for p, f in peft_factors(get_peft_model(base, lora_config(config))).items()}

    a0, other = init(0), init(1)
    first = {t: load_adapter(run["root"] / t / f"{t}_000").factors for t in TASKS}
    for path, a in a0.items():
        scale = float(a.norm())
        assert float((other[path] - a).norm()) > 0.5 * scale  # another seed: another init
        for t in TASKS:
            # Two AdamW steps at lr 1e-2 move each entry by at most ~2e-2.
            assert float((first[t][path].a - a).norm()) < 0.15 * scale
        assert float((first["add"][path].a - first["upper"][path].a).norm()) < 0.15 * scale


def test_heldout_losses_fall_on_the_trained_task(run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.training.teachers import heldout_loss
    from tests.tiny import char_tokenizer

    manifest = run["manifest"]
    for name, task in manifest["tasks"].items():
        rows = [a for a in manifest["adapters"] if a["task"] == name]
        assert task["final_loss"] == rows[-1]["heldout_loss"] < task["base_loss"]
    row = manifest["adapters"][-1]
    base = AutoModelForCausalLM.from_pretrained(run["folder"])
    model = PeftModel.from_pretrained(base, run["root"] / row["path"])
    texts = manifest["tasks"][row["task"]]["heldout_texts"]
    assert heldout_loss(model, char_tokenizer(), texts, 64) == pytest.approx(
        row["heldout_loss"], rel=1e-5
    )
    events = events_of(run["ctx"])
    reported = [(e["task"], e["step"]) for e in events if e.get("name") == "heldout_loss"]
    assert reported == [(t, 0) for t in TASKS] + [(t, s) for t in TASKS for s in (2, 4)]


def test_stored_deltas_are_the_adapters_mean_last_states_minus_the_base(run):
    from engine.lora import load_adapter
    from engine.lora.deltas import mean_last_state
    from engine.models import load_model

    manifest = run["manifest"]
    loaded = load_model(run["folder"], dtype="fp32")
    probes, length = manifest["probes"], manifest["probe_max_length"]
    base = mean_last_state(loaded, probes, max_length=length).numpy()
    cache = DeltaCache(run["root"] / "deltas")
    np.testing.assert_allclose(cache.base(), base, rtol=1e-6, atol=1e-6)
    assert cache.ids() == [a["id"] for a in manifest["adapters"]]
    for row in manifest["adapters"]:
        factors = load_adapter(run["root"] / row["path"]).factors
        v = mean_last_state(loaded, probes, factors, max_length=length).numpy()
        assert np.linalg.norm(v - base) > 1e-4  # the adapter moves the state
        np.testing.assert_allclose(cache.get(row["id"]), v - base, rtol=1e-5, atol=1e-6)
        entry = cache.entry(row["id"])
        assert entry["path"] == row["path"] and entry["shape"] == [32]
        assert entry["norm"] == pytest.approx(float(np.linalg.norm(v - base)), rel=1e-5)


def test_delta_cache_round_trip_and_disagreements(tmp_path):
    cache = DeltaCache(tmp_path / "deltas")
    assert cache.base() is None and cache.ids() == [] and cache.get("a") is None
    base = np.arange(4, dtype=np.float64)
    cache.set_base(base)
    assert cache.base().dtype == np.float32 and cache.base().tolist() == [0, 1, 2, 3]
    cache.put("add_000", np.array([3.0, 4.0, 0.0, 0.0]), "add/add_000")
    cache.put("sub_001", np.ones(4), "sub/sub_001")
    again = DeltaCache(tmp_path / "deltas")  # a reader in another process
    assert again.ids() == ["add_000", "sub_001"]
    assert again.get("add_000").tolist() == [3, 4, 0, 0]
    assert again.entry("add_000") == {"path": "add/add_000", "norm": 5.0, "shape": [4]}
    assert not list((tmp_path / "deltas").glob("*.tmp"))
    with pytest.raises(SubnetScopeError, match="shape"):
        cache.put("x", np.ones(3), "x")
    with pytest.raises(SubnetScopeError, match="not a usable delta id"):
        cache.put("../x", np.ones(4), "x")
    with pytest.raises(SubnetScopeError, match="NaN"):
        cache.put("x", np.array([1.0, np.nan, 0, 0]), "x")
    (tmp_path / "deltas" / "sub_001.npy").unlink()
    with pytest.raises(SubnetScopeError, match="lists 'sub_001', but sub_001.npy is missing"):
        again.get("sub_001")
    with pytest.raises(SubnetScopeError, match="missing"):
        again.ids()
    np.save(tmp_path / "deltas" / "sub_001.npy", np.ones(5, dtype=np.float32))
    with pytest.raises(SubnetScopeError, match=r"shape \[4\], but its file holds \[5\]"):
        again.get("sub_001")


def test_config_errors_are_one_sentence():
    from engine.jobs.registry import get_kind
    from engine.training.teachers_config import TeachersConfig

    kind = get_kind("train.lora_teachers")
    assert kind.defaults == TeachersConfig().to_params()
    assert kind.defaults["tasks"] == "all" and kind.defaults["dtype"] == "auto"
    assert TeachersConfig(tasks=["sub", "add"]).task_list() == ["add", "sub"]
    for params, message in (
        ({"tasks": "add,nope"}, "unknown task nope"),
        ({"dtype": "fp16"}, "not fp16"),
        ({"steps": 0}, "steps must be ≥ 1"),
        ({"target_modules": ""}, "target_modules is empty"),
        ({"rank": 4}, "unknown key rank"),
    ):
        with pytest.raises(SubnetScopeError, match=message):
            TeachersConfig.from_params(params)


def test_a_cancelled_run_stops(tmp_path, tiny_folder):
    from engine.jobs.context import JobCancelled
    from engine.training.jobs import train_lora_teachers

    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "events.jsonl").touch()
    ctx = JobContext(job_dir, lambda **kw: None)
    ctx.request_cancel()
    with pytest.raises(JobCancelled):
        train_lora_teachers({"model": tiny_folder(), **PARAMS}, ctx)
    assert not (ctx.result_dir / "checkpoints" / "manifest.json").exists()
