"""Every view's engine path, then every page, on the 1B zoo models in bf16 (issue 19, item 3).

The zoo folders (tests/zoo_support.py) hold Llama-3.2-1B's and Gemma-3-1B's real shapes with
random bf16 weights; loading them with dtype auto keeps bf16 on this CPU. One 1B model is held at
a time: the `zoo` fixture is parametrized per module, so pytest runs every test of one model
before loading the next, and the AppTests drop it (and the dashboard's own copy after them).
Inputs are tiny (one to three short texts, a few new tokens): these tests prove the views run at
this size and compute the right thing, the scale benchmark measures what they cost.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.zoo_support import ZOO_ROOT, planted_copy, write_lora, zoo_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("llama-3.2-1b", "gemma-3-1b")
TEXTS = ["The cat sat on the mat.", "def add(a, b):\n    return a + b", "Rain fell on the town."]
LAYER, NEURON = 1, 5  # the neuron the planted update, the adapters and the passport share
# Elements of the planted sparse update (flat indices): three in one row of layer 1's up
# projection (neuron 5), two in layer 0's q projection.
UP, Q = f"model.layers.{LAYER}.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight"
FACTS = {  # what the model page and the summary must show: the published shapes
    "llama-3.2-1b": {"layers": 16, "hidden": 2048, "width": 8192, "parameters": 1_235_814_400},
    "gemma-3-1b": {"layers": 26, "hidden": 1152, "width": 6912, "parameters": 999_885_952},
}


def plants(name: str) -> dict[str, list[int]]:
    hidden = FACTS[name]["hidden"]
    return {UP: [NEURON * hidden + i for i in (0, 7, 300)], Q: [3, 40_000]}


@dataclass
class Held:
    """One zoo model while its tests run; `release` drops it so the next load never doubles."""

    name: str
    folder: Path
    loaded: object | None

    def release(self) -> None:
        self.loaded = None
        gc.collect()


_HELD: list[Held] = []


def release_zoo_models() -> None:
    for held in _HELD:
        held.release()


@pytest.fixture(scope="module", autouse=True)
def drop_planted_copies(tmp_path_factory):
    """The planted checkpoint copies (2–2.5 GB each) go at the end: pytest keeps its last three
    base temp folders."""
    yield
    import shutil

    for tuned in tmp_path_factory.getbasetemp().glob("zoo-views-*/tuned"):
        shutil.rmtree(tuned, ignore_errors=True)


@pytest.fixture(scope="module", params=MODELS)
def zoo(request) -> Held:
    from engine.models import load_model

    release_zoo_models()
    folder = zoo_folder(request.param)
    held = Held(request.param, folder, load_model(str(folder), dtype="auto"))
    _HELD.append(held)
    yield held
    held.release()
    _HELD.remove(held)


@contextlib.contextmanager
def workspace_env(root: Path):
    """SUBNETSCOPE_CACHE at `root/cache`, local jobs held (their results are written here)."""
    from tests.job_support import hold_local_jobs
    from tests.passport_support import clear_caches

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(root / "cache"))
        mp.setenv("SUBNETSCOPE_MODEL_ROOTS", str(ZOO_ROOT))
        hold_local_jobs(mp)
        clear_caches()
        yield
    clear_caches()


def build_artifacts(name: str, root: Path, loaded=None) -> dict:
    """What the views read, made by the engine for zoo model `name` under `root` once: ICA
    templates in a finished templates job, two adapters in the saved-adapters folder, a planted
    copy of the checkpoint and its diff against the original (in the workspace's store)."""
    from engine.ica import BuildConfig, build_templates
    from engine.ica.jobs import TEMPLATES_FILE
    from engine.lora import saved_dir
    from engine.sparsity import DiffConfig, diff
    from tests.passport_support import finished_job

    folder = zoo_folder(name)
    made = root / "made.json"
    with workspace_env(root):
        if made.is_file():
            return json.loads(made.read_text())
        prose = root / "prose.txt"
        prose.write_text("\n\n".join(TEXTS * 2))
        config = BuildConfig(
            model=str(folder),
            datasets=(str(prose),),
            samples_per_ds=6,
            components=3,
            percentile=90.0,
            layers=f"0,{LAYER}",
            max_length=16,
        )
        holder = {}

        def ica(result: Path, view) -> None:
            model = loaded
            if model is None:  # the AppTests alone: load for this build only
                from engine.models import load_model

                model = load_model(str(folder), dtype="auto")
            out = result / TEMPLATES_FILE
            holder["templates"] = str(build_templates(config, out, loaded=model).path)
            del model
            gc.collect()

        params = {"model": str(folder), "components": 3, "datasets": [str(prose)]}
        holder["templates_job"] = finished_job("ica.build_templates", params, ica)
        hidden, width = FACTS[name]["hidden"], FACTS[name]["width"]
        shapes = {
            f"model.layers.{LAYER}.mlp.up_proj": (width, hidden),
            "model.layers.0.self_attn.q_proj": _q_shape(folder),
        }
        adapters = [
            str(write_lora(saved_dir() / f"zoo-{i}", shapes, base=str(folder), seed=i))
            for i in range(2)
        ]
        tuned = root / "tuned"
        planted_copy(folder, tuned, plants(name))
        result = diff(folder, tuned, DiffConfig(mask_criterion="exact"), cache=True)
        facts = {
            **holder,
            "adapters": adapters,
            "tuned": str(tuned),
            "diff": str(result.path),
            "changed": int(result.summary["changed"]["exact"]["changed"]),
            "masks": {
                t: np.flatnonzero(result.masks.get(t)).tolist()
                for t in plants(name)
                if result.masks.get(t) is not None
            },
            "cache": str(root / "cache"),
            "prose": str(prose),
        }
        made.write_text(json.dumps(facts))
        return facts


def _q_shape(folder: Path) -> tuple[int, int]:
    config = json.loads((folder / "config.json").read_text())
    heads, head_dim = config["num_attention_heads"], config["head_dim"]
    return heads * head_dim, config["hidden_size"]


@pytest.fixture(scope="module")
def built(zoo, tmp_path_factory) -> dict:
    root = tmp_path_factory.getbasetemp() / f"zoo-views-{zoo.name}"
    root.mkdir(exist_ok=True)
    return build_artifacts(zoo.name, root, zoo.loaded) | {"root": str(root)}


def last_logits(loaded, text: str = TEXTS[0]) -> torch.Tensor:
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return loaded.model(input_ids=ids).logits[0, -1].float()  # (vocab,)


# --- Model view -----------------------------------------------------------------------------------
def test_summary_and_parameters_by_kind(zoo) -> None:
    from engine.models import architecture_facts, model_summary, parameters_by_kind

    loaded, facts = zoo.loaded, FACTS[zoo.name]
    assert loaded.dtype == torch.bfloat16  # auto keeps the checkpoint's bf16 on this CPU
    shown = architecture_facts(loaded)
    assert shown["num_parameters"] == facts["parameters"]  # tied head counted once
    assert (shown["num_layers"], shown["hidden_size"]) == (facts["layers"], facts["hidden"])
    assert shown["intermediate_size"] == facts["width"] and shown["dtype"] == "bfloat16"
    summary = model_summary(loaded)
    assert set(summary["layer"]) == set(range(facts["layers"]))
    by_kind = parameters_by_kind(loaded).set_index("kind")["parameters"]
    assert by_kind.sum() == facts["parameters"]
    assert by_kind["mlp.up"] == facts["layers"] * facts["width"] * facts["hidden"]


def test_masked_generation_differs_and_leaves_the_shared_model_alone(zoo) -> None:
    from engine.models import NeuronMask, apply_mask, generate_text

    loaded = zoo.loaded
    mlp_down = loaded.architecture.down_module(loaded.model, 0)
    down_before = mlp_down.weight.detach().clone()
    pointers = {n: p.data_ptr() for n, p in loaded.model.named_parameters()}
    mask = NeuronMask.from_pairs([(0, n) for n in range(FACTS[zoo.name]["width"])] + [(1, 3)])
    plain = last_logits(loaded)
    with apply_mask(loaded, mask):
        masked = last_logits(loaded)
    assert not torch.allclose(plain, masked)
    generated = generate_text(loaded, TEXTS[0], max_new_tokens=2, chat=False, mask=mask)
    assert 1 <= generated.new_tokens <= 2  # greedy on random weights may draw the EOS id
    assert torch.equal(last_logits(loaded), plain)  # the mask held for its calls only
    assert torch.equal(mlp_down.weight, down_before)
    assert {n: p.data_ptr() for n, p in loaded.model.named_parameters()} == pointers
    assert not any(m._forward_pre_hooks for m in loaded.model.modules())


# --- Pruning view (SparC3): Wanda here, LRP in a process of its own -------------------------------
def test_wanda_scores(zoo) -> None:
    from engine.attribution.wanda import wanda_scores

    facts = FACTS[zoo.name]
    scores = wanda_scores(zoo.loaded, TEXTS[:2], max_length=16)
    assert sorted(scores.neuron) == list(range(facts["layers"]))
    stacked = torch.stack([scores.neuron[layer] for layer in range(facts["layers"])])
    assert stacked.shape == (facts["layers"], facts["width"])
    assert torch.isfinite(stacked).all() and (stacked > 0).all()
    assert scores.metadata["samples"] == 2


LRP_SCRIPT = """
import json, sys
import torch
from engine.attribution.compute import compute_scores
from engine.attribution.config import ComputeConfig
config = ComputeConfig(method="lrp", model=sys.argv[1], samples=sys.argv[2], limit=1,
                       max_length=16, dtype="bf16")
scores = compute_scores(config)
stacked = torch.stack([scores.neuron[layer] for layer in sorted(scores.neuron)])
keep = ("precision", "conservation_gap", "conservation_tolerance", "conserved", "tokens")
print(json.dumps({"shape": list(stacked.shape), "finite": bool(torch.isfinite(stacked).all()),
                  "nonzero": int((stacked != 0).sum()), **{k: scores.metadata[k] for k in keep}}))
"""


def test_lrp_scores_in_bf16_conserve(zoo, built) -> None:
    # LXT patches torch process-wide (engine/attribution/lxt_compat.py): a process of its own,
    # which loads the model again (this process's copy stays: about 2.5 GB more for a while).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SUBNETSCOPE_CACHE": built["cache"]}
    run = subprocess.run(
        [sys.executable, "-c", LRP_SCRIPT, str(zoo.folder), built["prose"]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    facts = FACTS[zoo.name]
    assert out["shape"] == [facts["layers"], facts["width"]]
    assert out["finite"] and out["nonzero"] > 0
    assert out["precision"] == "bf16"
    assert math.isfinite(out["conservation_gap"])
    assert out["conserved"], out  # within bf16's tolerance (CONSERVATION_TOLERANCE)


# --- ICA view ---------------------------------------------------------------------------------
def test_ica_templates_of_a_few_texts(zoo, built) -> None:
    from engine.ica import load_templates

    templates = load_templates(built["templates"])
    assert templates.component_ids == [0, 1, 2]
    assert templates.layers == [0, LAYER]
    assert templates.layer_widths() == [FACTS[zoo.name]["width"]] * FACTS[zoo.name]["layers"]
    keys = [n for comp in templates.components.values() for ns in comp.values() for n in ns]
    assert keys and all(0 <= n < FACTS[zoo.name]["width"] for n in keys)


# --- LoRA view --------------------------------------------------------------------------------
def test_lora_blend_applies_live_as_the_merged_weights(zoo, built) -> None:
    from engine.lora import BlendSpec, apply_lora, blend, load_adapter_set
    from engine.lora.adapters import module_shapes
    from engine.lora.live import merged_weight

    loaded = zoo.loaded
    adapters = load_adapter_set(
        built["adapters"], architecture=loaded.architecture, shapes=module_shapes(loaded.model)
    )
    result = blend(adapters, BlendSpec(weights=(1.0, 0.5), method="cat"))
    assert result.error < 1e-5  # cat is exact: rank 4 + 4
    path = f"model.layers.{LAYER}.mlp.up_proj"
    module = loaded.model.get_submodule(path)
    weight_before = module.weight.detach().clone()
    x = torch.randn(1, 5, FACTS[zoo.name]["hidden"], generator=torch.Generator().manual_seed(0))
    x = x.to(torch.bfloat16)
    with torch.inference_mode():
        base = module(x).float()
        with apply_lora(loaded, result.factors):
            live = module(x).float()
            blended_logits = last_logits(loaded)
        merged = (x @ merged_weight(module, result.factors[path]).T).float()
    delta_live, delta_merged = live - base, merged - base
    # the same update, up to bf16 rounding of outputs of |W x| (2⁻⁸ relative)
    assert delta_merged.norm() > 0.1 * base.norm()  # the update is not lost in the rounding
    assert (delta_live - delta_merged).norm() <= 0.02 * delta_merged.norm()
    assert not torch.allclose(blended_logits, last_logits(loaded))
    assert torch.equal(module.weight, weight_before)
    assert not any(m._forward_hooks for m in loaded.model.modules() if m is module)


# --- Sparsity view ----------------------------------------------------------------------------
def test_planted_sparse_update_is_found_exactly(zoo, built) -> None:
    planted = plants(zoo.name)
    assert built["changed"] == sum(len(v) for v in planted.values())
    assert built["masks"] == {name: sorted(indices) for name, indices in planted.items()}


# --- Neuron passport --------------------------------------------------------------------------
def test_passport_of_the_planted_neuron(zoo, built) -> None:
    from engine.neurons import passport

    with workspace_env(Path(built["root"])):
        p = passport(str(zoo.folder), LAYER, NEURON)
    facts = FACTS[zoo.name]
    assert p.space.widths == (facts["width"],) * facts["layers"]
    assert p.name == f"L{LAYER}.{NEURON}"
    [update] = p.updates.to_dict("records")
    assert update["up"] == pytest.approx(3 / facts["hidden"])  # 3 of its up row's elements
    assert set(p.adapters["adapter"]) == {"zoo-0", "zoo-1"}
    assert (p.adapters["up"] > 0).all()


# --- Pages (AppTest) on llama-3.2-1b --------------------------------------------------------------
PAGES = ("model", "sparsity", "ica", "pruning", "lora", "passport")


@pytest.fixture(scope="module")
def pages_workspace(tmp_path_factory) -> dict:
    release_zoo_models()  # the pages load their own copy
    root = tmp_path_factory.getbasetemp() / "zoo-views-llama-3.2-1b"
    root.mkdir(exist_ok=True)
    facts = build_artifacts("llama-3.2-1b", root) | {"root": str(root)}
    yield facts
    import streamlit as st

    st.cache_resource.clear()
    gc.collect()


def page_state(page: str, facts: dict) -> dict:
    folder = str(zoo_folder("llama-3.2-1b"))
    state = {"model_source": folder}
    if page == "sparsity":
        state |= {"sparsity_tuned_mode": "Path", "sparsity_tuned_path": facts["tuned"]}
    elif page == "ica":
        state |= {"templates": "A templates file…", "templates_typed": facts["templates"]}
    elif page == "lora":
        state |= {"lora_view": "Geometry"}  # generations: minutes of 1B tokens on this CPU
    elif page == "passport":
        state |= {"passport_layer": LAYER, "passport_neuron": NEURON}
    return state


@pytest.mark.parametrize("page", PAGES)
def test_page_opens_on_the_1b_model(page, pages_workspace, monkeypatch) -> None:
    from tests.page_support import open_page

    at = open_page(
        monkeypatch,
        page,
        cache=Path(pages_workspace["cache"]),
        models=ZOO_ROOT,
        state=page_state(page, pages_workspace),
        timeout=300,
        clear_resources=page == PAGES[0],
    )
    if page == "lora":
        at.text_area(key="adapters_typed").set_value("\n".join(pages_workspace["adapters"])).run()
        assert not at.exception, at.exception
    assert not [e.value for e in at.error], [e.value for e in at.error]
    [model] = [s for s in at.selectbox if s.label == "Model"]
    assert model.value == str(zoo_folder("llama-3.2-1b"))
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "1,236M parameters in bfloat16" in captions, captions
    SHOWN[page](at, pages_workspace)


def _model(at, facts) -> None:
    assert at.title[0].value == str(zoo_folder("llama-3.2-1b"))  # a folder's name is its path
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "1,235.8 M" and metrics["MLP neurons / layer"] == "8192"
    assert any("bfloat16 on cpu" in c.value for c in at.caption)


def _sparsity(at, facts) -> None:
    text = " ".join(m.value for m in at.markdown) + " ".join(str(m.value) for m in at.metric)
    assert at.dataframe or at.get("vega_lite_chart") or text, "nothing drawn"
    tables = [d.value for d in at.dataframe if "changed" in d.value.columns]
    assert any(t["changed"].sum() > 0 for t in tables), "the planted update is not shown"


def _ica(at, facts) -> None:
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Components"] == "3" and metrics["Layers"] == "0-1"


def _pruning(at, facts) -> None:
    assert any(b.label == "Run SparC3" for b in at.button)  # no run yet: the job form


def _lora(at, facts) -> None:
    metrics = {m.label: m.value for m in at.metric}
    assert "Blend error" in metrics


def _passport(at, facts) -> None:
    text = " ".join(m.value for m in at.markdown) + " ".join(h.value for h in at.subheader)
    assert "L1.5" in text
    # what the workspace's 1B artifacts say of it: the planted diff and both adapters
    assert "diff moved it" in text
    assert "Adapter zoo-0 writes into it" in text and "Adapter zoo-1 writes into it" in text


SHOWN = {
    "model": _model,
    "sparsity": _sparsity,
    "ica": _ica,
    "pruning": _pruning,
    "lora": _lora,
    "passport": _passport,
}


def test_a_load_that_would_not_fit_says_so_before_it_starts(tmp_path, monkeypatch) -> None:
    import streamlit as st
    from transformers.modeling_utils import PreTrainedModel

    import dashboard.loaders
    from engine.models import memory
    from tests.page_support import open_page

    release_zoo_models()
    st.cache_resource.clear()
    gc.collect()
    one_gb = 1 << 30
    monkeypatch.setattr(dashboard.loaders, "free_bytes", lambda device: one_gb)
    monkeypatch.setattr(memory, "free_bytes", lambda device: one_gb)
    loads = []

    def no_load(*args, **kwargs):
        loads.append(args)
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(dashboard.loaders, "load_model", no_load)
    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(no_load))
    folder = str(zoo_folder("llama-3.2-1b"))
    at = open_page(
        monkeypatch,
        "model",
        cache=tmp_path / "cache",
        models=ZOO_ROOT,
        state={"model_source": folder},
        clear_resources=True,
    )
    [error] = [e.value for e in at.error]
    assert error.startswith(f"'{folder}' would not fit:") and "1.0 GB free" in error, error
    assert not loads and not at.title  # refused from the plan: nothing read, nothing drawn
    assert any("would not fit" in c.value for c in at.sidebar.caption)
