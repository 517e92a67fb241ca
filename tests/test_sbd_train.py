"""The `sbd.train` job: options, the saved model and tokenizer, full and LoRA training."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.models import load_model, mask_token_id, sbd_generate
from engine.sbd.config import DEMO_SBD, MODEL_DIR, RUN_JSON, SBDConfig
from engine.sbd.jobs import train_job
from tests.tiny import char_tokenizer


def test_config_checks_its_options() -> None:
    assert SBDConfig(block_sizes="4").block_sizes == "4"
    assert SBDConfig(thresholds="0.6, 0.1").thresholds == (0.1, 0.6)
    for bad in ("1-4", "8-4", "x", ""):
        with pytest.raises(SubnetScopeError, match="block_sizes"):
            SBDConfig(block_sizes=bad)
    with pytest.raises(SubnetScopeError, match="thresholds"):
        SBDConfig(thresholds=(-0.1,))
    with pytest.raises(SubnetScopeError, match="unknown key"):
        SBDConfig.from_params({"blocks": 4})
    assert SBDConfig(checkpoint_every=0).checkpoint_every == 0


def test_demo_part_declares_every_param() -> None:
    from engine.demo.registry import PARTS
    from engine.jobs import get_kind

    part = next(p for p in PARTS if p.name == "sbd")
    assert part.view == "sbd" and part.job_kind == "sbd.train"
    assert {**get_kind(part.job_kind).defaults, **part.params} == part.params == DEMO_SBD
    assert SBDConfig.from_params(part.params).to_params() == part.params


def _params(folder: str, **extra) -> dict:
    return {
        "model": folder,
        "template": "basic",
        "steps": 3,
        "batch_size": 4,
        "max_length": 32,
        "eval_texts": 8,
        "eval_examples": 0,
        "lr": 1e-3,
        **extra,
    }


@pytest.mark.parametrize("lora", [False, True])
def test_job_saves_a_model_that_set_block_decodes(ctx, tiny_folder, lora) -> None:
    folder = tiny_folder("llama")
    summary = train_job(_params(folder, lora=lora, checkpoint_every=2), ctx)
    run = json.loads((ctx.result_dir / RUN_JSON).read_text())
    assert summary["kind"] == run["kind"] == "sbd"
    assert [row["step"] for row in run["losses"]] == [1, 2, 3]
    assert all(2 <= row["block"] <= 16 for row in run["losses"])
    assert run["template"] == "basic" and summary["evaluation"] is None  # eval_examples: 0
    # A LoRA checkpoint is the PEFT adapter (with the mask row); a full one the whole model.
    saved = "adapter_config.json" if lora else "config.json"
    assert (ctx.result_dir / "checkpoint-2" / saved).is_file()
    loaded = load_model(str(ctx.result_dir / MODEL_DIR))
    assert mask_token_id(loaded.tokenizer) == run["mask_token_id"]
    rows = loaded.model.get_input_embeddings().weight.shape[0]
    assert rows > run["mask_token_id"]
    out = sbd_generate(loaded, "What is 12 + 34?\n", block_size=4, threshold=0.5, max_new_tokens=6)
    assert out.forwards >= 1 and len(out.passes) == len(out.token_ids)


def test_lora_trains_only_the_adapter_and_the_mask_row(ctx, tiny_folder) -> None:
    folder = tiny_folder("llama")
    base = load_model(folder)
    train_job(_params(folder, lora=True, lr=1e-2), ctx)
    tuned = load_model(str(ctx.result_dir / MODEL_DIR))
    before = base.model.get_input_embeddings().weight
    after = tuned.model.get_input_embeddings().weight
    # The char tokenizer has no spare row: the mask token got a new one; the old rows stay.
    assert mask_token_id(tuned.tokenizer) == before.shape[0] == after.shape[0] - 1
    assert torch.equal(after[:-1], before)
    base_params = dict(base.model.named_parameters())
    changed = [
        name
        for name, p in tuned.model.named_parameters()
        if p.shape == base_params[name].shape and not torch.equal(p, base_params[name])
    ]
    # LoRA merged into the target projections; nothing else moved.
    assert changed and all(name.endswith("_proj.weight") for name in changed)


def test_a_tokenizer_without_an_end_token_is_one_clear_error(ctx, tmp_path) -> None:
    from tests.tiny import tiny_model

    loaded = tiny_model("llama")
    tokenizer = copy.deepcopy(char_tokenizer())  # the cached one is shared by every test
    tokenizer.eos_token = None
    loaded.model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    with pytest.raises(SubnetScopeError, match="end-of-sequence"):
        train_job(_params(str(tmp_path / "m")), ctx)
