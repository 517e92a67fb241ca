"""Shared fixtures: tiny models are built once per session and treated as read-only."""

from __future__ import annotations

import os

import pytest

from engine.jobs import JobContext
from tests.tiny import save_tiny_folder, tiny_model

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Dashboards started by tests must not launch the demo build in the background.
os.environ.setdefault("SUBNETSCOPE_AUTO_DEMO", "0")


def pytest_collection_finish(session):
    from tests.planted_support import start_if_needed

    start_if_needed(session.items)  # after -m / -k deselection


def pytest_sessionfinish(session, exitstatus):
    from tests.planted_support import stop

    stop()


@pytest.fixture(scope="session")
def tiny_models():
    from tests.tiny import FAMILIES

    return {family: tiny_model(family) for family in FAMILIES}


@pytest.fixture(scope="session")
def demo_model():
    from engine.models import load_model

    return load_model("demo")


@pytest.fixture
def tiny_folder(tmp_path_factory):
    def make(family: str = "llama"):
        root = tmp_path_factory.mktemp(f"tiny-{family}")
        save_tiny_folder(root, family)
        return str(root)

    return make


@pytest.fixture
def job_cache(tmp_path, monkeypatch):
    """A job cache of the test's own (tmp_path), free of the user's queue limits."""
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    monkeypatch.delenv("SUBNETSCOPE_MAX_JOBS", raising=False)
    monkeypatch.delenv("SUBNETSCOPE_JOB_MEMORY_GB", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def llama(tiny_models):
    """The session's tiny Llama (read-only, like every entry of `tiny_models`)."""
    return tiny_models["llama"]


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    statuses = []
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "events.jsonl").touch()
    return JobContext(job_dir, lambda **kw: statuses.append(kw))
