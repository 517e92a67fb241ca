"""Masked LoRA SFT (seed 001) on a tiny model: hooks during training, anti-drift, the scores."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from engine.errors import SubnetScopeError
from engine.ica import Templates
from engine.training.config import MaskedSFTConfig, three_way
from engine.training.masked import run_sft_masked

SMALL = {
    "steps": 3,
    "batch_size": 2,
    "max_length": 32,
    "lr": 1e-2,
    "eval_examples": 4,
    "eval_general_texts": 2,
    "limit": 20,
    "template": "alpaca",
}


@pytest.fixture
def templates_file(tmp_path):
    from tests.tiny import tiny_model

    arch = tiny_model("llama").architecture
    templates = Templates(
        components={0: {0: list(range(0, 24)), 1: list(range(10, 20))}, 1: {1: [1, 2, 3]}},
        metadata={
            "family": arch.family,
            "neurons_per_layer": list(arch.neurons_per_layer),
            "layers": [0, 1],
        },
    )
    return str(templates.save(tmp_path / "templates.json"))


def _run(ctx, folder, **params):
    config = MaskedSFTConfig.from_params({"model": folder, **SMALL, **params})
    return run_sft_masked(config, ctx), json.loads((ctx.result_dir / "run.json").read_text())


def test_lora_only_run_scores_before_and_after(ctx, tiny_folder):
    _, run = _run(ctx, tiny_folder("llama"))
    assert run["mask_mode"] == "none" and run["masked_neurons"] == 0
    assert run["after"]["task_ppl"] < run["before"]["task_ppl"]  # the new task is learned
    assert run["forgetting"] == pytest.approx(
        run["after"]["general_ppl"] / run["before"]["general_ppl"] - 1
    )
    assert (ctx.result_dir / "adapter" / "adapter_config.json").is_file()
    names = {json.loads(line).get("name") for line in (ctx.job_dir / "events.jsonl").open()}
    assert {"task_ppl", "general_ppl", "train/loss"} <= names


def test_lesion_with_anti_drift_leaves_masked_neurons_untouched(ctx, tiny_folder, templates_file):
    _, run = _run(
        ctx,
        tiny_folder("llama"),
        mask_mode="lesion",
        ica_templates=templates_file,
        ica_component_ids="0",
        anti_drift_row_param=True,
        anti_drift_apply_to="lora",
    )
    assert run["masked_neurons"] == 34 and run["anti_drift"]["max_drift"] == 0.0
    weights = load_file(str(ctx.result_dir / "adapter" / "adapter_model.safetensors"))
    # The LoRA update to layer 0's down projection, B @ A, is exactly zero on lesioned columns
    # 0..23 and not zero elsewhere: those neurons never learned, and still work afterwards.
    a = next(v for k, v in weights.items() if "layers.0.mlp.down_proj.lora_A" in k)
    b = next(v for k, v in weights.items() if "layers.0.mlp.down_proj.lora_B" in k)
    delta = b @ a  # (hidden, neurons)
    assert delta[:, :24].abs().max() == 0 and delta[:, 24:].abs().max() > 0


def test_preserve_masks_every_other_neuron(ctx, tiny_folder, templates_file):
    _, run = _run(
        ctx,
        tiny_folder("llama"),
        mask_mode="preserve",
        ica_templates=templates_file,
        ica_component_ids=[1],
    )
    assert run["masked_neurons"] == 2 * 48 - 3
    assert run["components"] == [1]


@pytest.fixture
def out_templates_file(tmp_path):
    """Seed 001's space: MLP output channels (the tiny Llama's hidden size is 32)."""
    templates = Templates(
        components={0: {0: list(range(12))}, 1: {1: [1, 2, 3]}},
        metadata={"space": "mlp_out", "family": "Llama", "hidden_size": 32, "layers": [0, 1]},
    )
    return str(templates.save(tmp_path / "out_templates.json"))


def test_mlp_out_lesion_masks_output_channels_and_holds_their_down_rows(
    ctx, tiny_folder, out_templates_file
):
    _, run = _run(
        ctx,
        tiny_folder("llama"),
        mask_mode="lesion",
        ica_templates=out_templates_file,
        ica_component_ids="0",
        anti_drift_row_param=True,
        anti_drift_apply_to="lora",
    )
    assert run["space"] == "mlp_out" and run["masked_neurons"] == 12
    assert run["anti_drift"]["parametrized"] == [
        "model.layers.0.mlp.down_proj.lora_B.default.weight"
    ]
    weights = load_file(str(ctx.result_dir / "adapter" / "adapter_model.safetensors"))
    b = next(v for k, v in weights.items() if "layers.0.mlp.down_proj.lora_B" in k)  # (32, r)
    assert b[:12].abs().max() == 0 and b[12:].abs().max() > 0


def test_a_space_other_than_the_files_is_refused(ctx, tiny_folder, out_templates_file):
    with pytest.raises(SubnetScopeError, match="hold mlp_out channels .* mlp_neurons"):
        _run(
            ctx,
            tiny_folder("llama"),
            mask_mode="lesion",
            ica_templates=out_templates_file,
            ica_space="mlp_neurons",
        )


def test_configs_and_three_way():
    runs = three_way({"steps": 5}, "cmp-1")
    assert [r["mask_mode"] for r in runs] == [None, "lesion", "preserve"]
    assert {r["group"] for r in runs} == {"cmp-1"}
    assert MaskedSFTConfig(ica_component_ids="0, 2").ica_component_ids == (0, 2)
    assert MaskedSFTConfig(mask_mode="none").mask_mode is None
    assert MaskedSFTConfig(ica_space="").ica_space is None
    for bad, message in [
        ({"mask_mode": "ablate"}, "lesion or preserve"),
        ({"anti_drift_apply_to": "all"}, "one of auto"),
        ({"ica_component_ids": "a,b"}, "must be integers"),
        ({"ica_space": "hidden"}, "mlp_neurons or mlp_out"),
    ]:
        with pytest.raises(SubnetScopeError, match=message):
            MaskedSFTConfig.from_params(bad)


def test_templates_for_another_model_are_refused(ctx, tiny_folder, templates_file):
    with pytest.raises(SubnetScopeError, match="built on a Llama model"):
        _run(ctx, tiny_folder("gpt2"), mask_mode="lesion", ica_templates=templates_file)


def test_lesion_hooks_act_on_the_lora_path_during_training(ctx, tiny_folder, templates_file):
    _run(
        ctx,
        tiny_folder("llama"),
        mask_mode="lesion",
        ica_templates=templates_file,
        ica_component_ids=[0],
    )
    weights = load_file(str(ctx.result_dir / "adapter" / "adapter_model.safetensors"))
    # lora_B starts at zero; a lesioned neuron's output is zeroed before the down projection, so
    # its up_proj row gets no gradient and stays exactly zero (no weight decay by default).
    b = next(v for k, v in weights.items() if "layers.0.mlp.up_proj.lora_B" in k)  # (48, r)
    assert b[:24].abs().max() == 0 and b[24:].abs().max() > 0


def test_train_sft_cli_routes_masked_runs(tmp_path, monkeypatch, capsys):
    import engine.jobs.cli as jobs_cli
    from engine.cli import main

    submitted = []
    monkeypatch.setattr(
        jobs_cli,
        "_submit",
        lambda args: submitted.append((args.kind, json.loads(args.params))) or 0,
    )
    path = tmp_path / "run.yaml"
    path.write_text("steps: 4\nlr: 0.001\n")
    assert main(["train", "sft", "--config", str(path)]) == 0
    assert submitted.pop() == ("train.sft", {"steps": 4, "lr": 0.001})
    argv = [
        "train",
        "sft",
        "--config",
        str(path),
        "--mask-mode",
        "lesion",
        "--ica-component-ids",
        "0,1",
        "--anti-drift-row-param",
        "--anti-drift-apply-to",
        "both",
    ]
    assert main(argv) == 0
    kind, params = submitted.pop()
    assert kind == "train.sft_masked"
    assert params == {
        "steps": 4,
        "lr": 0.001,
        "mask_mode": "lesion",
        "ica_component_ids": "0,1",
        "anti_drift_row_param": True,
        "anti_drift_apply_to": "both",
    }
    path.write_text("steps: 4\nmask_mode: preserve\n")
    assert main(["train", "sft", "--config", str(path), "--three-way", "--group", "g"]) == 0
    assert [(k, p["mask_mode"], p["group"]) for k, p in submitted] == [
        ("train.sft_masked", None, "g"),
        ("train.sft_masked", "lesion", "g"),
        ("train.sft_masked", "preserve", "g"),
    ]
    assert main(["train", "sft", "--mask-mode", "lesion", "--ica-component-ids", "x"]) == 1
    assert "must be integers" in capsys.readouterr().err
