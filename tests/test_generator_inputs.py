"""The LoRA generator's inputs: its config, prompt files, and teachers folders — bad input is one
clear sentence."""

from __future__ import annotations

import json

import pytest

from engine.errors import SubnetScopeError
from engine.lora.generator.config import GeneratorTrainConfig
from engine.lora.generator.generate import clean_prompts, read_prompts
from engine.lora.generator.teachers import FORMAT, open_teachers


def test_config_defaults_and_derived() -> None:
    config = GeneratorTrainConfig(held_out="sub, mul")
    assert config.held_out_tasks == ("sub", "mul")
    assert config.uses_delta and config.uses_weights  # multitask
    assert not GeneratorTrainConfig(loss="weight").uses_delta
    assert not GeneratorTrainConfig(loss="delta").uses_weights


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"loss": "mse"}, "loss must be one of"),
        ({"arch": "transformer"}, "arch must be one of"),
        ({"steps": 0}, "steps must be ≥ 1"),
        ({"lr": 0}, "lr must be > 0"),
        ({"lambda_d": -1}, "lambda_d must be ≥ 0"),
        ({"encoder": "t5"}, "encoder must be one of"),
        ({"epochs": 3}, "unknown key epochs"),
    ],
)
def test_config_refuses_bad_params(params: dict, words: str) -> None:
    with pytest.raises(SubnetScopeError, match=words):
        GeneratorTrainConfig.from_params(params)


def test_prompt_files(tmp_path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("What is 3 - 1?\n\n  What is 9 - 4?  \n")
    assert read_prompts(txt) == ["What is 3 - 1?", "What is 9 - 4?"]
    listed = tmp_path / "p.json"
    listed.write_text(json.dumps(["a", "b"]))
    assert read_prompts(listed) == ["a", "b"]
    checkpoint = tmp_path / "prompts.json"  # a teacher checkpoint's own prompts.json
    checkpoint.write_text(json.dumps({"task": "add", "step": 5, "prompts": ["x"]}))
    assert read_prompts(checkpoint) == ["x"]
    lines = tmp_path / "p.jsonl"
    lines.write_text('{"instruction": "i1"}\n{"prompt": "p2"}\n')
    assert read_prompts(lines) == ["i1", "p2"]


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("bad.json", "{not json", "is not valid JSON"),
        ("dict.json", '{"a": 1}', "JSON list of prompt strings"),
        ("bad.jsonl", '{"x": 1}\n', "has no prompt, instruction or text field"),
        ("empty.txt", "\n \n", "type at least one prompt"),
    ],
)
def test_bad_prompt_files(tmp_path, name: str, content: str, words: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SubnetScopeError, match=words):
        read_prompts(path)


def test_missing_prompt_file(tmp_path) -> None:
    with pytest.raises(SubnetScopeError, match="no prompts file"):
        read_prompts(tmp_path / "nope.txt")


def test_too_many_prompts() -> None:
    with pytest.raises(SubnetScopeError, match="at most"):
        clean_prompts([f"p{i}" for i in range(1000)])


def test_teachers_folder_errors(tmp_path, job_cache) -> None:
    with pytest.raises(SubnetScopeError, match="holds no teachers run"):
        open_teachers(str(tmp_path))
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(SubnetScopeError, match="is not a teachers manifest"):
        open_teachers(str(tmp_path))
    (folder / "manifest.json").write_text(json.dumps({"format": FORMAT, "adapters": []}))
    with pytest.raises(SubnetScopeError, match="lists no checkpoints"):
        open_teachers(str(tmp_path))
    with pytest.raises(SubnetScopeError, match="neither a teachers job id nor a folder"):
        open_teachers("no-such-job")
    with pytest.raises(SubnetScopeError, match="not built yet"):
        open_teachers("demo")


class _View:
    def __init__(self, state: str) -> None:
        from types import SimpleNamespace

        from engine.lora.generator.config import DEMO_TEACHERS

        self.id = f"teachers-{state}"
        self.spec = SimpleNamespace(params=dict(DEMO_TEACHERS))
        self.status = SimpleNamespace(state=state)


def test_a_demo_generator_waits_for_running_teachers_never_for_queued(monkeypatch) -> None:
    """`demo build` submits teachers and generators together: a generator waits while the
    teachers run, and refuses (instead of holding the queue slot) while they are queued."""
    import engine.jobs
    import engine.lora.generator.teachers as teachers
    from engine.lora.generator.runs import wait_for_demo_teachers

    class Ctx:
        def progress(self, *a, **k) -> None:
            pass

        def check_cancel(self) -> None:
            pass

    looks = []

    def done_after_two_looks():
        looks.append(1)
        return object() if len(looks) > 2 else None

    monkeypatch.setattr(teachers, "demo_teachers_job", done_after_two_looks)
    monkeypatch.setattr(engine.jobs, "list_jobs", lambda **kw: [_View("running")])
    wait_for_demo_teachers(Ctx(), poll_s=0)
    assert len(looks) == 3
    monkeypatch.setattr(teachers, "demo_teachers_job", lambda: None)
    monkeypatch.setattr(engine.jobs, "list_jobs", lambda **kw: [_View("queued")])
    with pytest.raises(SubnetScopeError, match="still queued"):
        wait_for_demo_teachers(Ctx(), poll_s=0)
    monkeypatch.setattr(engine.jobs, "list_jobs", lambda **kw: [])
    wait_for_demo_teachers(Ctx(), poll_s=0)  # nothing to wait for: open_teachers says why
