"""Shared fixtures: tiny models are built once per session and treated as read-only."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Dashboards started by tests must not launch the demo build in the background.
os.environ.setdefault("SUBNETSCOPE_AUTO_DEMO", "0")


@pytest.fixture(scope="session")
def tiny_models():
    from tests.tiny import FAMILIES, tiny_model

    return {family: tiny_model(family) for family in FAMILIES}


@pytest.fixture(scope="session")
def demo_model():
    from engine.models import load_model

    return load_model("demo")
