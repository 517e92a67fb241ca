"""Which adapters the LoRA blender lists: the demo's task adapters first, then other runs."""

from __future__ import annotations

import json

import pytest

from engine.jobs import api, files
from engine.jobs.status_file import update_status
from engine.lora.catalog import DEMO_ADAPTERS, demo_adapter_paths, list_adapters
from tests.job_support import hold_local_jobs


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    hold_local_jobs(monkeypatch)

    def finished(params: dict, state: str = "succeeded", adapter: bool = True) -> str:
        view = api.submit("train.lora", params)
        if adapter:
            folder = view.path / files.RESULT / "adapter"
            folder.mkdir(parents=True)
            (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
        update_status(view.path, state=state, fraction=1.0)
        return view.id

    return finished


def _demo(name: str) -> dict:
    return dict(DEMO_ADAPTERS[name][1])


def test_demo_adapters_come_first_in_demo_order(jobs):
    entries = list_adapters()
    assert [e.name for e in entries] == ["demo-prose", "demo-code", "demo-arithmetic"]
    assert not any(e.ready for e in entries) and all(e.path is None for e in entries)
    assert demo_adapter_paths() == []

    other = jobs({"model": "demo", "dataset": "/data/legal.jsonl", "lora_rank": 4})
    code = jobs(_demo("demo-code"))
    jobs({"model": "demo", "dataset": "demo-code", "steps": 2}, state="failed")
    jobs({"model": "demo", "dataset": "demo-general"}, adapter=False)  # succeeded, no folder
    arithmetic_failed = jobs(_demo("demo-arithmetic"), state="failed")
    prose = jobs(_demo("demo-prose"))
    duplicate = jobs(_demo("demo-prose"))  # a rebuilt demo adapter is not listed twice

    entries = list_adapters()
    names = [e.name for e in entries]
    assert names[:3] == ["demo-prose", "demo-code", "demo-arithmetic"]
    assert names[3:] == [f"legal-{other.rsplit('-', 1)[-1]}"]
    by_name = {e.name: e for e in entries}
    assert by_name["demo-code"].job_id == code and by_name["demo-code"].ready
    assert by_name["demo-prose"].ready and by_name["demo-prose"].is_demo
    assert by_name["demo-prose"].job_id in {prose, duplicate}
    failed = by_name["demo-arithmetic"]
    assert not failed.ready and failed.job_id == arithmetic_failed
    assert failed.dataset == "demo-arithmetic" and failed.source == "demo"
    assert by_name[names[3]].source == "demo" and by_name[names[3]].dataset == "/data/legal.jsonl"
    assert demo_adapter_paths() == [by_name["demo-prose"].path, by_name["demo-code"].path]
    assert all((p / "adapter_config.json").is_file() for p in demo_adapter_paths())


def test_saved_blends_are_listed_after_runs(jobs, tmp_path):
    from engine.lora.catalog import saved_dir

    folder = saved_dir() / "mix"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "demo"}))
    (saved_dir() / "notes").mkdir()  # not an adapter: not listed
    entry = list_adapters()[-1]
    assert (entry.name, entry.path, entry.source, entry.ready) == ("mix", folder, "demo", True)
    assert len(list_adapters()) == 4


def test_resolve_demo_names_and_folders(jobs, tmp_path):
    from engine.errors import SubnetScopeError
    from engine.lora.catalog import resolve_adapters

    with pytest.raises(SubnetScopeError, match="demo build"):
        resolve_adapters(["demo"])
    for name in DEMO_ADAPTERS:
        jobs(_demo(name))
    paths, names = resolve_adapters(["demo"])
    assert names == list(DEMO_ADAPTERS) and paths == demo_adapter_paths()
    other = jobs({"model": "demo", "dataset": "demo-code", "lora_rank": 4})
    typed = api.get_job(other).path / files.RESULT / "adapter"
    paths, names = resolve_adapters(["demo-code", str(typed), str(tmp_path)])
    assert paths == [demo_adapter_paths()[1], typed, tmp_path]
    assert names == ["demo-code", f"demo-code-{other.rsplit('-', 1)[-1]}", tmp_path.name]
