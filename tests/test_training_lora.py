"""Task-adapter LoRA SFT on a tiny model: a loadable PEFT folder, held-out perplexity, rank
evolution from the factors; texts and instruction records; the CLI and the demo parts."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from engine.errors import SubnetScopeError
from engine.training.config import CONFIGS, LoRARunConfig, target_list
from engine.training.rank_tracking import COLUMNS, RANK_TABLE, RankTracker
from tests.job_support import events_of

SMALL = {
    "steps": 4,
    "batch_size": 2,
    "max_length": 32,
    "eval_texts": 2,
    "limit": 24,
    "lr": 1e-2,
    "rank_every": 2,
    "lora_rank": 4,
}


def test_lora_run_writes_a_loadable_adapter(ctx, tiny_folder):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.training.jobs import train_lora

    folder = tiny_folder()
    summary = train_lora({"model": folder, **SMALL}, ctx)
    adapter = ctx.result_dir / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == folder and config["r"] == 4
    assert set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    base = AutoModelForCausalLM.from_pretrained(folder)
    model = PeftModel.from_pretrained(base, adapter)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        tuned = model(input_ids=ids).logits
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
    assert not torch.allclose(tuned, plain)  # the adapter was trained and loads
    run = json.loads((ctx.result_dir / "run.json").read_text())
    assert [entry["step"] for entry in run["losses"]] == [1, 2, 3, 4]
    assert run["after"]["heldout_ppl"] < run["before"]["heldout_ppl"]
    assert run["heldout_texts"] == 2 and run["config"]["lora_rank"] == 4
    assert summary["adapter"] == str(adapter)
    events = events_of(ctx)
    assert [e["step"] for e in events if e.get("name") == "rank/effective"] == [2, 4]
    assert [e["step"] for e in events if e.get("name") == "rank/stable"] == [2, 4]
    assert {"train/loss", "heldout_ppl"} <= {e.get("name") for e in events}
    table = pd.read_parquet(ctx.result_dir / RANK_TABLE)
    assert tuple(table.columns) == COLUMNS and len(table) == 2 * 14
    assert table["effective_rank"].between(1.0, 4.0 + 1e-6).all()  # at most the LoRA rank
    assert set(table["layer"]) == {0, 1}


def test_rank_from_factors_equals_the_dense_spectrum(ctx):
    from engine.lora.lowrank import Factors

    gen = torch.Generator().manual_seed(0)
    f = Factors(torch.randn(24, 3, generator=gen), torch.randn(3, 16, generator=gen), 0.5)
    tracker = RankTracker(ctx)
    exact = tracker.record_factors(1, {"model.layers.2.mlp.up_proj": f})
    dense = tracker.record_dense(2, {"model.layers.2.mlp.up_proj": f.dense()})
    assert exact["effective"] == pytest.approx(dense["effective"], rel=1e-5)
    assert exact["stable"] == pytest.approx(dense["stable"], rel=1e-5)
    assert exact["norm"] == pytest.approx(float(f.dense().norm()), rel=1e-5)
    rows = tracker.table()
    assert rows["layer"].tolist() == [2, 2] and rows["kind"].tolist() == ["up_proj"] * 2
    zero = tracker.record_dense(3, {"x.layers.0.q": torch.zeros(4, 4)})
    assert zero["effective"] == 0.0 and zero["norm"] == 0.0


def test_lora_on_instruction_records_and_jsonl_texts(ctx, tiny_folder, tmp_path):
    from engine.training.lora_runs import load_training_texts, run_lora
    from tests.tiny import char_tokenizer

    config = LoRARunConfig.from_params(
        {"dataset": "demo-arithmetic", "template": "alpaca", "limit": 10, "eval_texts": 3}
    )
    train, heldout = load_training_texts(config, char_tokenizer())
    assert len(train) == 7 and len(heldout) == 3
    assert all("### Response:" in t for t in train + heldout)
    path = tmp_path / "texts.jsonl"
    path.write_text(
        "".join(json.dumps({"text": f"line {i} of plain text"}) + "\n" for i in range(8))
    )
    texts = LoRARunConfig.from_params({"dataset": str(path), "eval_texts": 2})
    train, heldout = load_training_texts(texts, char_tokenizer())
    assert sorted(train + heldout) == sorted(f"line {i} of plain text" for i in range(8))
    run_lora(
        LoRARunConfig.from_params(
            {
                "model": tiny_folder(),
                **SMALL,
                "steps": 2,
                "dataset": "demo-arithmetic",
                "template": "basic",
                "use_rslora": True,
                "lora_alpha": 4.0,
            }
        ),
        ctx,
    )
    adapter = json.loads((ctx.result_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter["use_rslora"] is True


def test_lora_errors(ctx, tiny_folder):
    from engine.training.lora_runs import run_lora

    with pytest.raises(SubnetScopeError, match="match no layer"):
        run_lora(
            LoRARunConfig.from_params(
                {"model": tiny_folder(), **SMALL, "target_modules": "c_attn"}
            ),
            ctx,
        )
    with pytest.raises(SubnetScopeError, match="more than eval_texts"):
        run_lora(
            LoRARunConfig.from_params(
                {"model": tiny_folder(), **SMALL, "limit": 3, "eval_texts": 3}
            ),
            ctx,
        )
    for bad, message in [
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"lora_alpha": 0}, "lora_alpha must be > 0"),
        ({"lr": 0}, "lr must be > 0"),
        ({"eval_texts": 0}, "eval_texts must be ≥ 1"),
        ({"lora_rank": 0}, "lora_rank must be ≥ 1"),
        ({"alpha": 3}, "unknown key alpha"),
    ]:
        with pytest.raises(SubnetScopeError, match=message):
            LoRARunConfig.from_params(bad)


def test_targets_and_configs():
    assert target_list("all-linear") == "all-linear"
    assert target_list("q_proj, v_proj") == ["q_proj", "v_proj"]
    assert LoRARunConfig(target_modules=["q_proj", "v_proj"]).target_modules == "q_proj,v_proj"
    assert LoRARunConfig().lr == 2e-4 and LoRARunConfig().lora is True
    assert {"lora", "relora", "rank1"} <= set(CONFIGS)
    for name in ("lora_rank", "target_modules", "rank_every", "use_rslora"):
        assert LoRARunConfig.help(name)


def test_job_kinds_and_demo_parts():
    from engine.demo.parts import load_parts
    from engine.jobs import load_kinds
    from engine.lora.catalog import DEMO_ADAPTERS

    kinds = load_kinds()
    for kind in ("train.lora", "train.relora", "train.rank1"):
        assert kinds[kind].result_page == "lora"
        json.dumps(kinds[kind].defaults)  # job params are JSON
    parts = load_parts()
    assert list(DEMO_ADAPTERS) == ["demo-prose", "demo-code", "demo-arithmetic"]
    datasets = []
    for name in DEMO_ADAPTERS:
        part = parts[name]
        assert part.view == "lora" and part.job_kind == "train.lora"
        LoRARunConfig.from_params(part.params)  # valid params
        datasets.append(part.params["dataset"])
    assert datasets == ["demo-general", "demo-code", "demo-arithmetic"]


@pytest.mark.parametrize("method", ["lora", "relora", "rank1"])
def test_train_cli_submits(method, tmp_path, monkeypatch):
    import engine.jobs.cli as jobs_cli
    from engine.cli import main

    submitted = []
    monkeypatch.setattr(
        jobs_cli,
        "_submit",
        lambda args: submitted.append((args.kind, json.loads(args.params))) or 0,
    )
    path = tmp_path / "run.yaml"
    path.write_text("steps: 4\nlr: 0.001\ntarget_modules: q_proj,v_proj\n")
    assert main(["train", method, "--config", str(path)]) == 0
    assert submitted == [
        (f"train.{method}", {"steps": 4, "lr": 0.001, "target_modules": "q_proj,v_proj"})
    ]


def test_train_cli_errors_are_one_line(tmp_path, capsys):
    from engine.cli import main

    path = tmp_path / "run.yaml"
    path.write_text("steps: 3\nreset_every: 0\n")
    assert main(["train", "relora", "--config", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reset_every must be ≥ 1" in err
    assert main(["train", "lora", "--three-way"]) == 1
    assert "apply to `train sft` only" in capsys.readouterr().err
