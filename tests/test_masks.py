"""Reversible per-call neuron masks: effect, reversal, isolation across threads, validation."""

from __future__ import annotations

import threading

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.models import (
    NeuronMask,
    apply_mask,
    load_mask,
    parse_mask,
    parse_neuron_spec,
)
from tests.tiny import FAMILIES

DECODERS = [f for f in FAMILIES if f != "bert"]


def _ids(loaded, text: str = "hello world") -> torch.Tensor:
    return loaded.tokenizer(text, return_tensors="pt")["input_ids"]


def _logits(loaded, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return loaded.model(input_ids=ids).logits


def _capture_down_inputs(loaded, layer: int, ids: torch.Tensor) -> torch.Tensor:
    seen = {}
    module = loaded.architecture.down_module(loaded.model, layer)
    handle = module.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    try:
        _logits(loaded, ids)
    finally:
        handle.remove()
    return seen["x"]


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_mask_changes_output_and_is_fully_reverted(tiny_models, family) -> None:
    loaded = tiny_models[family]
    ids = _ids(loaded)
    weights_before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    before = _logits(loaded, ids)
    width = loaded.architecture.neurons_per_layer[0]
    mask = NeuronMask.from_pairs([(0, n) for n in range(width)] + [(1, 3)])
    with apply_mask(loaded, mask):
        masked = _logits(loaded, ids)
    after = _logits(loaded, ids)
    assert not torch.allclose(before, masked)
    assert torch.equal(before, after)
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, weights_before[name]), name
    down = loaded.architecture.down_module(loaded.model, 0)
    assert not down._forward_pre_hooks


@pytest.mark.parametrize("mode", ["zero", "keep", "scale"])
def test_each_mode_multiplies_the_neuron_axis_as_specified(tiny_models, mode) -> None:
    loaded = tiny_models["llama"]
    ids = _ids(loaded)
    clean = _capture_down_inputs(loaded, 1, ids)  # (1, seq, 48)
    mask = NeuronMask.from_pairs([(1, 2), (1, 5)], mode=mode, factor=3.0, layers=(1,))
    seen = {}
    module = loaded.architecture.down_module(loaded.model, 1)

    # Registered before the mask: sees the input after the mask's hook (hooks run in order).
    with apply_mask(loaded, mask):
        handle = module.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
        try:
            _logits(loaded, ids)
        finally:
            handle.remove()
    expected = clean.clone()
    if mode == "zero":
        expected[..., [2, 5]] = 0
    elif mode == "scale":
        expected[..., [2, 5]] *= 3.0
    else:
        keep = torch.zeros(48, dtype=torch.bool)
        keep[[2, 5]] = True
        expected[..., ~keep] = 0
    torch.testing.assert_close(seen["x"], expected)


def test_keep_mode_leaves_unlisted_layers_alone_when_layers_given(tiny_models) -> None:
    loaded = tiny_models["llama"]
    ids = _ids(loaded)
    clean0 = _capture_down_inputs(loaded, 0, ids)
    mask = NeuronMask.from_pairs([(1, 0)], mode="keep", layers=(1,))
    with apply_mask(loaded, mask):
        masked0 = _capture_down_inputs(loaded, 0, ids)
    torch.testing.assert_close(masked0, clean0)


def test_masked_call_in_one_thread_never_leaks_into_another(tiny_models) -> None:
    loaded = tiny_models["llama"]
    ids = _ids(loaded, "the quick brown fox")
    reference = loaded.model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    width = loaded.architecture.neurons_per_layer[0]
    mask = NeuronMask.from_pairs([(layer, n) for layer in (0, 1) for n in range(width)])
    with apply_mask(loaded, mask):
        masked_reference = _logits(loaded, ids)
    stop = threading.Event()
    inside_mask = threading.Event()
    errors: list[BaseException] = []

    def masked_worker() -> None:
        try:
            while not stop.is_set():
                with apply_mask(loaded, mask):
                    inside_mask.set()
                    out = _logits(loaded, ids)
                    assert torch.equal(out, masked_reference)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
            inside_mask.set()

    thread = threading.Thread(target=masked_worker)
    thread.start()
    try:
        inside_mask.wait(timeout=30)
        for _ in range(5):
            out = loaded.model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
            assert torch.equal(out, reference)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert not loaded.architecture.down_module(loaded.model, 0)._forward_pre_hooks


def test_mask_is_removed_when_the_call_raises(tiny_models) -> None:
    loaded = tiny_models["gpt2"]
    with pytest.raises(RuntimeError), apply_mask(loaded, NeuronMask.from_pairs([(0, 1)])):
        raise RuntimeError("boom")
    assert not loaded.architecture.down_module(loaded.model, 0)._forward_pre_hooks


def test_validation_names_the_bad_layer_or_neuron(tiny_models) -> None:
    arch = tiny_models["gemma3n"].architecture
    with pytest.raises(SubnetScopeError, match="layers 0..1"):
        NeuronMask.from_pairs([(2, 0)]).validate(arch)
    with pytest.raises(SubnetScopeError, match="neuron 40 of layer 1, which has neurons 0..39"):
        NeuronMask.from_pairs([(1, 40)]).validate(arch)
    NeuronMask.from_pairs([(0, 40)]).validate(arch)  # layer 0 is 48 wide


def test_mask_json_round_trip_and_pruned_list_format(tmp_path) -> None:
    mask = NeuronMask.from_pairs([(3, 7), (1, 2)], mode="scale", factor=0.5)
    assert parse_mask(mask.to_json()) == mask
    pruned = [{"layer": 1, "neuron": 4, "score": -2.5}, {"layer": 1, "neuron": 9, "score": -1.0}]
    assert parse_mask(pruned) == NeuronMask.from_pairs([(1, 4), (1, 9)], mode="zero")
    path = tmp_path / "mask.json"
    path.write_text("{not json")
    with pytest.raises(SubnetScopeError, match="not valid JSON"):
        load_mask(path)
    with pytest.raises(SubnetScopeError, match="not found"):
        load_mask(tmp_path / "missing.json")
    with pytest.raises(SubnetScopeError, match="unknown mask mode"):
        parse_mask({"mode": "invert", "neurons": []})


def test_neuron_spec_parsing() -> None:
    assert parse_neuron_spec("3:17 3:20-22, 5:1") == [(3, 17), (3, 20), (3, 21), (3, 22), (5, 1)]
    with pytest.raises(SubnetScopeError, match="layer:neuron"):
        parse_neuron_spec("3-17")
    with pytest.raises(SubnetScopeError, match="backwards"):
        parse_neuron_spec("3:25-20")


def test_neuron_spec_is_bounded_before_it_is_expanded() -> None:
    """`0:0-999999999` would be a list of a billion pairs (~100 GB): refused on its count."""
    import time

    started = time.perf_counter()
    with pytest.raises(SubnetScopeError, match="the most one list may name"):
        parse_neuron_spec("0:0-999999999")
    with pytest.raises(SubnetScopeError, match="past the model's 96 neurons"):
        parse_neuron_spec("0:0-47 1:0-48", max_neurons=96)
    with pytest.raises(SubnetScopeError, match="layer:neuron"):
        parse_neuron_spec("0:" + "9" * 5000)  # past Python's digit limit: still one clear error
    assert time.perf_counter() - started < 1.0
    assert len(parse_neuron_spec("0:0-47 1:0-47", max_neurons=96)) == 96
