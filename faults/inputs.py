"""Traversal and injection strings against every input the dashboard takes from a user or a link:
the neuron box, export and save names, hub ids, and each page's URL parameters (through AppTest)."""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from unittest import mock

from engine.errors import SubnetScopeError
from faults.table import Row, scenario

AREA = "inputs"
HOSTILE = [
    "../../x",
    "/etc/passwd",
    "..\\x",
    "x\x00y",
    "$(touch /tmp/p)",
    "a;b",
    "a\nb",
    "x" * 5000,
    "org/repo",
]
CANARY = Path("/tmp/p")  # noqa: S108 (checked, never written) what `$(touch /tmp/p)` would create if a shell ever ran it


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + "…'"


def _measured(fn: Callable[[], object]) -> tuple[str, float, float]:
    """(what happened, seconds, peak MB of Python allocations) for one call."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        fn()
        what = "accepted"
    except SubnetScopeError as exc:
        what = f"refused: {exc}".replace("\n", "\\n")  # one table row
    finally:
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return what, seconds, peak


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


def neuron_spec_rows() -> Iterator[Row]:
    from engine.models.masks import parse_neuron_spec

    for spec, limit in [
        ("0:0-999999999", None),
        ("0:0-999999999", 30 * 1536),
        ("0:0-" + "9" * 5000, None),
        *((s, None) for s in HOSTILE),
    ]:
        what, seconds, peak = _measured(partial(parse_neuron_spec, spec, max_neurons=limit))
        of = f" (model of {limit:,} neurons)" if limit else ""
        yield Row(
            AREA,
            f"neuron box: {_short(spec)}{of}",
            what[:160],
            f"{seconds * 1000:.1f} ms, {peak:.2f} MB",
            ok=what.startswith("refused") and seconds < 1 and peak < 16,
        )


def name_rows(scratch: Path) -> Iterator[Row]:
    """Export (pruned model) and save (blend) names resolve through engine.names.named_folder,
    which both dashboard buttons call before anything is written."""
    from engine.lora.catalog import saved_dir
    from engine.names import named_folder
    from engine.paths import models_dir

    before = _files_under(scratch)
    for what, parent in (
        ("pruned-model export name", models_dir()),
        ("blend save name", saved_dir()),
    ):
        refused = []
        for name in [*HOSTILE[:-1], ".hidden", "x" * 65]:
            result, _, _ = _measured(partial(named_folder, parent, name, what))
            refused.append(result.startswith("refused"))
        ok_name = named_folder(parent, "blend-prose_code.v2", what)
        written = _files_under(scratch) - before
        yield Row(
            AREA,
            f"{what}: {len(refused)} traversal / injection strings",
            f'{sum(refused)} refused with "… is not a valid {what}: use 1 to 64 letters…"; '
            f"'{ok_name.name}' gives {ok_name.relative_to(scratch)}; nothing written",
            f"{len(written)} files written",
            ok=all(refused) and not written and ok_name.parent == parent,
        )


def hub_rows() -> Iterator[Row]:
    import huggingface_hub

    from engine.models.loading import is_hub_id
    from engine.sparsity.sources import download_hub_weights

    calls: list = []
    with mock.patch.object(huggingface_hub, "HfApi", side_effect=lambda *a, **k: calls.append(1)):
        for value in HOSTILE[:-1]:
            what, _, _ = _measured(partial(download_hub_weights, value))
            ok = what.startswith("refused") and not calls and not is_hub_id(value)
            yield Row(
                AREA,
                f"hub download of {_short(value)}",
                what[:160],
                f"{len(calls)} hub requests",
                ok=ok,
            )


@contextmanager
def _online_workspace(scratch: Path) -> Iterator[list]:
    """A cache and model root in `scratch`, a hub that looks reachable, and every download
    attempt recorded (and refused)."""
    import huggingface_hub

    import dashboard.sources
    import engine.runtime
    from tests.tiny import save_tiny_folder

    models = scratch / "models"
    save_tiny_folder(models / "tiny-llama")
    calls: list = []

    def no_network(*args, **kwargs):
        calls.append(kwargs)
        raise OSError("no network in the fault suite")

    with (
        mock.patch.dict(os.environ, {"SUBNETSCOPE_MODEL_ROOTS": str(models)}),
        mock.patch.object(engine.runtime, "hub_reachable", lambda *a: True),
        mock.patch.object(dashboard.sources, "hub_reachable", lambda *a: True),
        mock.patch.object(huggingface_hub, "snapshot_download", no_network),
    ):
        yield calls


URL_PARAMS = [
    ("sparsity", "tuned"),
    ("sparsity", "run_dir"),
    ("sparsity", "job"),
    ("pruning", "scores"),
    ("ica", "templates"),
    ("lora", "adapters"),
    ("passport", "model"),
]


def url_rows(scratch: Path) -> Iterator[Row]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard.app import __file__ as app_file

    with _online_workspace(scratch) as downloads:
        model = str(scratch / "models" / "tiny-llama")
        before = _files_under(scratch / "cache")
        for page, name in URL_PARAMS:
            outcomes, seconds = [], 0.0
            for value in HOSTILE:
                st.cache_data.clear()
                at = AppTest.from_file(app_file, default_timeout=120)
                at.session_state["model_source"] = model
                at.run()
                at.query_params[name] = value
                started = time.perf_counter()
                at.switch_page(f"../pages/{page}.py").run()
                seconds = max(seconds, time.perf_counter() - started)
                warned = any(f"Ignored `{name}=" in w.value for w in at.warning)
                typed = [t.value for t in at.text_input if t.value == value]
                outcomes.append(warned and not at.exception and not typed)
            written = {p for p in _files_under(scratch / "cache") - before if "jobs" not in p.parts}
            yield Row(
                AREA,
                f"?{name}= on {page}: {len(HOSTILE)} strings (paths, org/repo, …)",
                f"{sum(outcomes)}/{len(outcomes)} shown as an ignored link, nothing "
                f"preselected or typed; {len(downloads)} downloads tried",
                f"max {seconds:.2f} s per page run",
                ok=all(outcomes) and not downloads and not written,
            )
        # a hub id typed on the sparsity page: looked up in the local cache only, then a button
        st.cache_data.clear()
        at = AppTest.from_file(app_file, default_timeout=120)
        at.session_state["model_source"] = model
        at.run()
        at.switch_page("../pages/sparsity.py").run()
        at.radio(key="sparsity_tuned_mode").set_value("Path").run()
        at.text_input(key="sparsity_tuned_path").set_value("org/repo").run()
        local_only = all(kw.get("local_files_only") for kw in downloads)
        button = [b.label for b in at.button if b.label == "Download org/repo"]
        yield Row(
            AREA,
            "hub id org/repo typed as the tuned weights (hub reachable)",
            f"{len(downloads)} local-cache lookups, 0 downloads; "
            f"'{button[0] if button else 'no button'}' offered; error: "
            f"{at.error[0].value if at.error else '-'}"[:200],
            ok=local_only and bool(button) and not at.exception,
        )


def config_rows() -> Iterator[Row]:
    import tomllib

    from engine.paths import PROJECT_ROOT

    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    hosts = config.get("server", {}).get("allowedHosts", [])
    yield Row(
        AREA,
        "server.allowedHosts (DNS rebinding to 127.0.0.1)",
        f"set to {hosts}",
        ok=bool(hosts) and set(hosts) <= {"localhost", "127.0.0.1", "::1"},
    )


@scenario("inputs")
def inputs(scratch: Path) -> list[Row]:
    existed = CANARY.exists()
    env = {
        "SUBNETSCOPE_CACHE": str(scratch / "cache"),
        "SUBNETSCOPE_AUTO_DEMO": "0",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    with mock.patch.dict(os.environ, env):
        rows = [
            *neuron_spec_rows(),
            *name_rows(scratch),
            *hub_rows(),
            *url_rows(scratch),
            *config_rows(),
        ]
    if not existed:
        rows.append(
            Row(
                AREA,
                "shell metacharacters in every input above",
                f"{CANARY} was not created: no input reached a shell",
                ok=not CANARY.exists(),
            )
        )
    return rows
