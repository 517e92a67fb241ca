"""Which templates the page and `ica_templates: demo` find: job results, the demo's first."""

from __future__ import annotations

import pytest

from engine.errors import SubnetScopeError
from engine.ica import Templates
from engine.ica.catalog import DEMO_PARAMS, list_templates, resolve_templates
from engine.ica.jobs import TEMPLATES_FILE
from engine.jobs import api, files
from engine.jobs.status_file import update_status
from tests.job_support import hold_local_jobs


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    hold_local_jobs(monkeypatch)

    def finished(params: dict, state: str = "succeeded") -> str:
        view = api.submit("ica.build_templates", params)
        Templates(components={0: {0: [1]}}).save(view.path / files.RESULT / TEMPLATES_FILE)
        update_status(view.path, state=state, fraction=1.0)
        return view.id

    return finished


def test_demo_templates_come_first_and_resolve(jobs, tmp_path):
    with pytest.raises(SubnetScopeError, match="demo build --only ica-templates"):
        resolve_templates("demo")
    other = jobs({"model": "demo", "components": 8})  # on the demo model, but not the demo part
    assert not list_templates()[0].is_demo
    with pytest.raises(SubnetScopeError, match="not built yet"):
        resolve_templates("demo")
    demo = jobs(DEMO_PARAMS)
    jobs({"model": "demo", "components": 4}, state="failed")
    entries = list_templates()
    assert [e.job_id for e in entries] == [demo, other]
    assert entries[0].label.startswith("Demo templates") and entries[0].is_demo
    assert resolve_templates("demo") == entries[0].path
    assert resolve_templates(str(entries[1].path.parent)) == entries[1].path


def test_labels_name_the_mlp_out_space(jobs):
    out = jobs({"model": "demo", "components": 8, "space": "mlp_out"})
    neurons = jobs({"model": "demo", "components": 8})
    labels = {e.job_id: e.label for e in list_templates()}
    assert "· mlp_out" in labels[out] and "mlp_" not in labels[neurons]
