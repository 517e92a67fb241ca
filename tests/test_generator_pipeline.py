"""The LoRA generator end to end on a tiny model: teachers → training (every loss mode) →
evaluation → an adapter from prompts, saved as a PEFT folder that PEFT and the blender load;
the ablation table and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from engine.errors import SubnetScopeError
from engine.jobs import JobContext
from engine.lora.generator.config import MODES, GeneratorTrainConfig
from tests.tiny import save_tiny_folder

TASKS = ("add", "sub", "mul")
TEACHERS = {
    "tasks": ",".join(TASKS),
    "steps": 4,
    "checkpoint_every": 2,
    "train_examples": 16,
    "heldout_examples": 4,
    "probe_prompts": 1,
    "lr": 1e-2,
    "template": "alpaca",
}
QUICK = {
    "held_out": "sub",
    "steps": 3,
    "batch_size": 2,
    "n_prompts": 4,
    "eval_draws": 1,
    "delta_every": 1,
}


def _ctx(root, name: str) -> JobContext:
    job_dir = root / name
    job_dir.mkdir()
    (job_dir / "events.jsonl").touch()
    return JobContext(job_dir, lambda **kw: None)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One tiny teachers run and one trained generator (multitask, base-model encoder)."""
    from engine.lora.generator.runs import run_training
    from engine.training.jobs import train_lora_teachers

    root = tmp_path_factory.mktemp("generator")
    folder = root / "tiny"
    save_tiny_folder(folder, "llama")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(root / "cache"))
        teachers = _ctx(root, "teachers")
        train_lora_teachers({"model": str(folder), **TEACHERS}, teachers)
        checkpoints = teachers.result_dir / "checkpoints"
        config = GeneratorTrainConfig(teachers=str(checkpoints), encoder="base", **QUICK)
        gen = _ctx(root, "generator")
        summary = run_training(config, gen)
    return {
        "root": root,
        "model": str(folder),
        "checkpoints": checkpoints,
        "gen": gen,
        "summary": summary,
    }


def test_training_writes_generator_and_evaluation(setup) -> None:
    result = setup["gen"].result_dir
    meta = json.loads((result / "generator" / "meta.json").read_text())
    assert meta["held_out"] == ["sub"] and meta["train_tasks"] == ["add", "mul"]
    assert meta["encoder"] == "base" and meta["rank"] == 4
    table = pd.read_parquet(result / "evaluation.parquet")
    assert set(table["split"]) == {"held-out task", "seen task, unseen prompts"}
    assert set(table.loc[table.split == "held-out task", "task"]) == {"sub"}
    for variant in ("base", "teacher", "teachers' mean", "generated"):
        assert (table["variant"] == variant).sum() == len(TASKS)
    base = table[table.variant == "base"]
    teacher = table[table.variant == "teacher"]
    assert np.allclose(base["recovery"], 0.0)  # Δ(base) = 0: its distance is ‖Δ_teacher‖
    assert np.allclose(
        base["delta_dist"].to_numpy(),
        teacher["delta_dist"].to_numpy() * 0
        + [
            np.linalg.norm(np.load(setup["checkpoints"] / "deltas" / f"{t}_001.npy")) for t in TASKS
        ],
        rtol=1e-5,
    )
    assert np.allclose(teacher["recovery"], 1.0) and np.allclose(teacher["delta_cos"], 1.0)
    history = pd.read_parquet(result / "history.parquet")
    assert list(history["step"]) == [1, 2, 3] and {"weight", "delta"} <= set(history.columns)
    held = setup["summary"]["evaluation"]["held_out"]
    assert held["tasks"] == ["sub"] and np.isfinite(held["generated"]["loss"])


def test_teacher_row_matches_its_own_manifest(setup) -> None:
    """The evaluation's teacher loss is the teachers' own response loss of the final checkpoint."""
    from engine.lora.generator.evaluate import response_loss
    from engine.lora.generator.teachers import open_teachers, teacher_factors
    from engine.lora.lowrank import Factors
    from engine.models import load_model

    run = open_teachers(str(setup["checkpoints"]))
    loaded = load_model(setup["model"])
    teacher = run.final("sub")
    factors = {
        m: Factors(b, a, run.alpha / run.rank)
        for m, (a, b) in teacher_factors(teacher.path).items()
    }
    loss = response_loss(loaded, run.heldout_pairs("sub"), factors, run.max_length)
    table = pd.read_parquet(setup["gen"].result_dir / "evaluation.parquet")
    row = table[(table.task == "sub") & (table.variant == "teacher")]
    assert float(row["loss"].iloc[0]) == pytest.approx(loss, rel=1e-6)


def test_response_loss_by_hand(llama) -> None:
    """Mean NLL of the response tokens only, against a direct computation."""
    from engine.lora.generator.evaluate import response_loss

    pairs = [("ab", "cd"), ("x", "yz!")]
    got = response_loss(llama, pairs)
    nll, count = 0.0, 0
    tok = llama.tokenizer
    for prompt, response in pairs:
        p = tok(prompt)["input_ids"]
        r = tok(response, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p + r])
        with torch.no_grad():
            logp = torch.log_softmax(llama.model(input_ids=ids).logits[0].float(), -1)
        for i in range(len(p), len(p) + len(r)):
            nll -= float(logp[i - 1, ids[0, i]])
            count += 1
    assert got == pytest.approx(nll / count, rel=1e-5)


@pytest.mark.parametrize("mode", [m for m in MODES if m != "multitask"])
def test_every_loss_mode_trains(setup, mode: str) -> None:
    from engine.lora.generator.encoder import open_encoder
    from engine.lora.generator.teachers import open_teachers
    from engine.lora.generator.training import (
        build_for,
        open_base,
        train_steps,
        training_data,
    )

    config = GeneratorTrainConfig(
        teachers=str(setup["checkpoints"]), encoder="base", loss=mode, **{**QUICK, "delta_every": 2}
    )
    run = open_teachers(config.teachers)
    loaded = open_base(run, config)
    encoder = open_encoder("base", loaded)
    data = training_data(run, config, encoder)
    generator = build_for(run, data, config, encoder.dim, int(data.base.shape[0]))
    before = [p.detach().clone() for p in generator.parameters()]
    history = train_steps(loaded, run, config, data, generator)
    assert len(history) == 3 and all(np.isfinite(h["loss"]) for h in history)
    moved = [not torch.equal(b, p) for b, p in zip(before, generator.parameters(), strict=True)]
    assert any(moved)
    if mode == "delta_guided":
        assert "head" in history[0] and "computed" in history[1]  # δ computed on step 2 only
    if mode == "delta":
        assert all("delta" in h for h in history)


def test_generated_adapter_is_a_peft_folder(setup, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.lora.adapters import load_adapter
    from engine.lora.generator.generate import generate_adapter, open_generator, save_generated
    from engine.models import load_model

    run = open_generator(setup["gen"].result_dir)
    loaded = load_model(setup["model"])
    adapter = generate_adapter(
        run, ["What is 12 - 5?", "What is 40 - 18?", "What is 9 - 3?"], loaded
    )
    out = save_generated(adapter, tmp_path / "gen")
    read = load_adapter(out)
    assert set(read.factors) == set(adapter.factors)
    for module, f in adapter.factors.items():
        assert torch.equal(read.factors[module].a, f.a) and torch.equal(read.factors[module].b, f.b)
        assert read.factors[module].scale == f.scale
    info = json.loads((out / "generated.json").read_text())
    assert len(info["prompts"]) == 3 and info["encoder"] == "base"
    base = AutoModelForCausalLM.from_pretrained(setup["model"])
    peft = PeftModel.from_pretrained(base, str(out))
    ids = torch.tensor([[5, 6, 7, 8]])
    from engine.lora.live import apply_lora

    with torch.no_grad(), apply_lora(loaded, adapter.factors):
        ours = loaded.model(input_ids=ids).logits
    with torch.no_grad():
        theirs = peft(input_ids=ids).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    with pytest.raises(SubnetScopeError, match="exists"):
        save_generated(adapter, out)  # nothing saved is overwritten


def test_same_prompts_same_adapter_other_prompts_differ(setup) -> None:
    from engine.lora.generator.generate import generate_adapter, open_generator
    from engine.models import load_model

    run = open_generator(setup["gen"].result_dir)
    loaded = load_model(setup["model"])
    one = generate_adapter(run, ["What is 12 - 5?", "What is 1 - 1?"], loaded)
    again = generate_adapter(run, ["What is 12 - 5?", "What is 1 - 1?"], loaded)
    other = generate_adapter(run, ["What is 7 * 8?", "What is 3 * 14?"], loaded)
    module = next(iter(one.factors))
    assert torch.equal(one.factors[module].a, again.factors[module].a)
    assert not torch.equal(one.factors[module].b, other.factors[module].b)


def test_ablation_table(setup, monkeypatch) -> None:
    from engine.lora.generator.runs import run_ablation

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(setup["root"] / "cache"))
    ctx = _ctx(setup["root"], "ablation")
    params = {
        "teachers": str(setup["checkpoints"]),
        "encoder": "base",
        **QUICK,
        "steps": 2,
        "configs": "weight_only,delta_only",
        "trials": 2,
    }
    result = run_ablation(params, ctx)
    table = pd.read_parquet(ctx.result_dir / "ablation.parquet")
    assert len(table) == 2 * 2 * 2  # configs × trials × splits
    assert set(table["config"]) == {"weight_only", "delta_only"}
    assert "held_out/weight_only" in result["by_config"]
    with pytest.raises(SubnetScopeError, match="configs must name"):
        run_ablation({**params, "configs": "nope"}, _ctx(setup["root"], "bad"))


def test_bad_held_out_task(setup) -> None:
    from engine.lora.generator.runs import run_training

    config = GeneratorTrainConfig(
        teachers=str(setup["checkpoints"]), encoder="base", held_out="div", steps=1
    )
    with pytest.raises(SubnetScopeError, match="task div not in the teachers run"):
        run_training(config, _ctx(setup["root"], "bad-task"))
    config = GeneratorTrainConfig(
        teachers=str(setup["checkpoints"]), encoder="base", held_out="add,sub,mul", steps=1
    )
    with pytest.raises(SubnetScopeError, match="leaves no teacher checkpoint"):
        run_training(config, _ctx(setup["root"], "all-held"))


def test_cli_generate(setup, tmp_path, capsys) -> None:
    from engine.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 12 - 5?\nWhat is 40 - 18?\nWhat is 9 - 3?\n")
    out = tmp_path / "cli-gen"
    args = ["lora", "generate", "--generator", str(setup["gen"].result_dir)]
    code = main([*args, "--prompts", str(prompts), "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["prompts"] == 3 and summary["modules"] > 0
    assert (out / "adapter_model.safetensors").is_file()
    code = main([*args, "--prompts", str(prompts), "--out", str(out)])
    assert code != 0
    assert "exists" in capsys.readouterr().err
