"""Where inputs go (engine/models/devices.py), and every method asking it rather than assuming
the CPU or the first parameter's device (issue 19, item 2: device_map="auto" across GPUs)."""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.models.devices import accumulation_dtype, input_device, module_device
from tests.tiny import tiny_model

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["The cat sat on the mat.", "Rain, then sun."]


class FirstParameterElsewhere(nn.Module):
    """A model whose first parameter sits on the meta device (as an offloaded or far layer of a
    device_map model would), while its input embedding is on the CPU."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.far = nn.Linear(2, 2, device="meta")
        self.inner = inner

    def get_input_embeddings(self) -> nn.Module:
        return self.inner.get_input_embeddings()


def test_inputs_go_to_the_embedding_not_the_first_parameter():
    model = FirstParameterElsewhere(tiny_model("llama").model)
    assert next(model.parameters()).device.type == "meta"
    assert input_device(model) == torch.device("cpu")


def test_an_offloaded_embedding_runs_where_its_hook_says():
    model = tiny_model("llama").model
    embedding = model.get_input_embeddings()
    embedding.to("meta")
    assert input_device(model) == torch.device("cpu")  # its first real parameter's
    embedding._hf_hook = types.SimpleNamespace(execution_device="cpu")  # accelerate's hook
    assert input_device(model) == torch.device("cpu")
    embedding._hf_hook = types.SimpleNamespace(execution_device=torch.device("meta", 0))
    assert input_device(model).type == "meta"  # taken from the hook, not guessed


def test_module_device_skips_meta_and_falls_back_to_cpu():
    mixed = nn.Sequential(nn.Linear(2, 2, device="meta"), nn.Linear(2, 2))
    assert module_device(mixed) == torch.device("cpu")
    assert module_device(nn.Linear(2, 2, device="meta")) == torch.device("cpu")
    assert module_device(nn.ReLU()) == torch.device("cpu")


def test_accumulation_dtype_has_no_float64_on_mps():
    assert accumulation_dtype(torch.device("cpu")) == torch.float64
    assert accumulation_dtype(torch.device("cuda", 0)) == torch.float64
    assert accumulation_dtype(torch.device("mps")) == torch.float32


class Spy:
    """input_device stand-in: records the calls, answers the CPU."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: nn.Module) -> torch.device:
        self.calls += 1
        return torch.device("cpu")


def spy_on(monkeypatch, *modules: types.ModuleType) -> Spy:
    spy = Spy()
    for module in modules:
        monkeypatch.setattr(module, "input_device", spy)
    return spy


def test_methods_put_their_inputs_where_input_device_says(monkeypatch, tiny_models, tmp_path):
    import engine.attribution.wanda as wanda
    import engine.ica.capture as capture
    import engine.lora.deltas as deltas
    import engine.models.generation as generation

    llama = tiny_models["llama"]
    runs = {
        generation: lambda: generation.next_token_logits(llama, "Hello"),
        wanda: lambda: wanda.wanda_scores(llama, TEXTS),
        capture: lambda: capture.capture_activations(llama, TEXTS, (0, 1)),
        deltas: lambda: deltas.mean_last_state(llama, TEXTS),
    }
    for module, run in runs.items():
        spy = spy_on(monkeypatch, module)
        run()
        assert spy.calls >= 1, module.__name__


def test_mask_vectors_go_to_each_layers_own_device(monkeypatch, tiny_models):
    import engine.models.masks as masks

    llama = tiny_models["llama"]
    placed = []

    def where(module: nn.Module) -> torch.device:
        placed.append(module)
        return torch.device("cpu")

    monkeypatch.setattr(masks, "module_device", where)
    mask = masks.NeuronMask.from_pairs([(0, 1), (1, 2)])
    with masks.apply_mask(llama, mask):
        pass
    downs = [llama.architecture.down_module(llama.model, layer) for layer in (0, 1)]
    assert placed == downs


# The modules that run a model on inputs: none of them may send inputs to `loaded.device` (the
# first parameter's device) or hard-code the CPU for what the model computes.
METHOD_MODULES = [
    "engine/attribution/lrp.py",
    "engine/attribution/wanda.py",
    "engine/attribution/causal.py",
    "engine/ica/capture.py",
    "engine/lora/deltas.py",
    "engine/lora/live.py",
    "engine/models/generation.py",
    "engine/models/masks.py",
    "engine/training/relora.py",
    "engine/training/masked.py",
]


@pytest.mark.parametrize("path", METHOD_MODULES)
def test_no_method_sends_inputs_to_the_first_parameters_device(path):
    source = (ROOT / path).read_text()
    assert ".to(loaded.device)" not in source
    assert "device=loaded.device" not in source
    assert "next(model.parameters()).device" not in source
    assert '.to("cpu")' not in source and "device='cpu'" not in source


def test_input_device_is_the_one_place():
    import engine.models as models

    assert models.input_device is input_device
    assert "get_input_embeddings" in inspect.getsource(input_device)
