"""Demo orchestration: parts report their state, `build` submits only what is missing."""

from __future__ import annotations

import pytest

from engine.demo import DemoPart, build_demo, demo_part, demo_status
from engine.demo import parts as parts_module
from engine.errors import SubnetScopeError
from engine.jobs import load_kinds, wait_job


@pytest.fixture
def test_parts(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    load_kinds()  # the product's parts register on import: do it before swapping the registry
    monkeypatch.setattr(parts_module, "_PARTS", {})
    demo_part(
        DemoPart("always", "A part that is ready", "diagnostics.sleep", is_ready=lambda: True)
    )
    demo_part(DemoPart("nap", "A quick job", "diagnostics.sleep", {"seconds": 0.2, "steps": 2}))
    monkeypatch.setattr(parts_module, "load_parts", lambda: dict(parts_module._PARTS))


def states() -> dict[str, str]:
    return {s.part.name: s.state for s in demo_status()}


def test_build_submits_missing_parts_once_and_they_become_ready(test_parts) -> None:
    assert states() == {"always": "ready", "nap": "missing"}
    submitted = build_demo()
    assert [v.spec.kind for v in submitted] == ["diagnostics.sleep"]
    assert states()["nap"] == "building"
    assert build_demo() == []  # already being built
    wait_job(submitted[0].id, timeout=60)
    assert states() == {"always": "ready", "nap": "ready"}
    assert build_demo() == []


def test_unknown_part_is_a_clear_error(test_parts) -> None:
    with pytest.raises(SubnetScopeError, match="unknown demo part 'x'; parts: always, nap"):
        build_demo("x")


def test_the_product_registers_its_parts() -> None:
    names = set(parts_module.load_parts())
    assert {"model", "baseline-perplexity"} <= names


def test_the_planted_model_is_a_named_source(tmp_path, monkeypatch) -> None:
    """`demo-toxic` resolves through engine.models.sources, which the demo registry fills."""
    from engine.attribution.planted import planted_of
    from engine.models.catalog import list_local_models
    from engine.models.loading import resolve_source

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    with pytest.raises(SubnetScopeError, match="planted model is not built yet"):
        resolve_source("demo-toxic")
    with pytest.raises(SubnetScopeError, match="planted model is not built yet"):
        planted_of("demo-toxic")
    assert planted_of("demo") == []
    folder = tmp_path / "models" / "smollm2-135m-demo-toxic"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "planted.json").write_text('{"neurons": [{"layer": 3, "neuron": 7}]}')
    assert resolve_source("demo-toxic").location == str(folder)
    assert planted_of("demo-toxic") == [(3, 7)]
    toxic = [c for c in list_local_models([tmp_path / "models"]) if c.source == "demo-toxic"]
    assert [c.label for c in toxic] == ["SmolLM2-135M with a planted trigger (demo-toxic)"]
