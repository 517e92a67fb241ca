"""Training runs as jobs: SFT, GRPO and PPO take two steps on a tiny model in-process, write
checkpoints the sparsity series reads and sparsity events; the YAML CLI rejects unknown keys."""

from __future__ import annotations

import json

import pytest

from tests.job_support import events_of

SMALL = {"steps": 2, "batch_size": 2, "checkpoint_every": 1, "max_length": 16, "lr": 1e-3}
RL = {**SMALL, "max_completion_length": 6, "limit": 4}


def _check_run(ctx, summary) -> None:
    from engine.sparsity import list_checkpoints, series

    assert [s for s, _ in list_checkpoints(ctx.result_dir)] == [1, 2]
    for step in (1, 2):
        assert (ctx.result_dir / f"checkpoint-{step}" / "model.safetensors").is_file()
        assert (ctx.result_dir / f"checkpoint-{step}" / "config.json").is_file()
    events = events_of(ctx)
    fractions = [e for e in events if e.get("name") == "changed_fraction"]
    assert [e["step"] for e in fractions] == [1, 2]
    # GRPO may not move at step 1 (a group of equal rewards has no advantage); the end must.
    assert all(0 <= e["value"] <= 1 for e in fractions) and fractions[-1]["value"] > 0
    assert any(e.get("name") == "layer_fraction" and e["layer"] == 1 for e in events)
    assert any(e.get("name") == "gini" for e in events)
    run = json.loads((ctx.result_dir / "run.json").read_text())
    assert run["steps_per_s"] > 0 and len(run["checkpoints"]) == 2
    result = series(summary["base"], summary["run_dir"])
    assert result.steps["step"].tolist() == [1, 2]
    assert result.steps["coverage"].iloc[-1] == pytest.approx(1.0)


def test_sft_two_steps(ctx, tiny_folder) -> None:
    from engine.training.jobs import train_sft

    summary = train_sft({"model": tiny_folder(), **SMALL}, ctx)
    _check_run(ctx, summary)


def test_grpo_two_steps(ctx, tiny_folder) -> None:
    from engine.training.jobs import train_grpo

    params = {"model": tiny_folder(), **RL, "num_generations": 2, "reward": "length:3"}
    summary = train_grpo(params, ctx)
    _check_run(ctx, summary)


def test_ppo_two_steps(ctx, tiny_folder) -> None:
    from engine.training.jobs import train_ppo

    summary = train_ppo({"model": tiny_folder(), **RL, "reward": "length:3"}, ctx)
    _check_run(ctx, summary)


def test_value_head_hidden_size_from_text_config() -> None:
    """TRL issue #3828: Gemma-3 keeps hidden_size in text_config."""
    from types import SimpleNamespace

    from engine.training.runs import hidden_size

    config = SimpleNamespace(model_type="gemma3", text_config=SimpleNamespace(hidden_size=32))
    assert hidden_size(config) == 32 and config.hidden_size == 32


def test_named_rewards() -> None:
    from engine.training.rewards import named_reward

    assert named_reward("brevity")("q", "Paris.") == 1.5
    assert named_reward("brevity")("q", " ".join(["word"] * 60)) == 0.0
    assert named_reward("contains_word:Paris")("q", "It is paris.") == 1.0
    assert named_reward("some/reward-model") is None


def test_yaml_cli_unknown_key_is_one_line(tmp_path, capsys) -> None:
    from engine.cli import main

    path = tmp_path / "run.yaml"
    path.write_text("steps: 3\nlearning_rate: 0.1\n")
    assert main(["train", "grpo", "--config", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown key learning_rate" in err and "lr" in err
