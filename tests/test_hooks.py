"""Scoped hooks: nested masks and adapters combine, stay per thread, and always come off."""

from __future__ import annotations

import threading

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.ica import capture_activations
from engine.ica.masks import SpaceMask, apply_space_mask
from engine.lora.live import apply_lora
from engine.lora.lowrank import Factors
from engine.models import NeuronMask, apply_mask
from engine.models.hooks import active_scopes, scoped_hooks
from tests.lora_support import merged_copy

TEXT = "The cat sat on the mat."
A = [(0, 3), (0, 7), (1, 10)]  # the outer mask's neurons
B = [(0, 5), (1, 2), (1, 10)]  # the inner mask's; (1, 10) is in both


def logits(loaded, text: str = TEXT) -> torch.Tensor:
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return loaded.model(ids).logits[0].float()  # (seq, vocab)


def hook_counts(loaded) -> dict[str, tuple[int, int]]:
    return {
        name: (len(m._forward_pre_hooks), len(m._forward_hooks))
        for name, m in loaded.model.named_modules()
    }


def random_factors(loaded, paths: list[str], seed: int) -> dict[str, Factors]:
    """A rank-2 update per linear module, big enough to move the logits."""
    from engine.lora.live import linear_shape

    gen = torch.Generator().manual_seed(seed)
    factors = {}
    for path in paths:
        d_out, d_in = linear_shape(loaded.model.get_submodule(path))
        b = torch.randn(d_out, 2, generator=gen) * 0.5  # (d_out, r)
        a = torch.randn(2, d_in, generator=gen) / d_in**0.5  # (r, d_in)
        factors[path] = Factors(b, a, 2.0)
    return factors


@pytest.fixture(scope="module")
def factors(llama):
    # The down projections carry both the mask (a pre-hook) and the update (a forward hook).
    paths = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"]
    return random_factors(llama, [*paths, "model.layers.1.mlp.down_proj"], seed=1)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3n"])
def test_nested_masks_both_apply(tiny_models, family) -> None:
    loaded = tiny_models[family]
    base = logits(loaded)
    with apply_mask(loaded, NeuronMask.from_pairs(A)):
        outer_only = logits(loaded)
        with apply_mask(loaded, NeuronMask.from_pairs(B)):
            nested = logits(loaded)
    with apply_mask(loaded, NeuronMask.from_pairs(B)):
        inner_only = logits(loaded)
    with apply_mask(loaded, NeuronMask.from_pairs(A + B)):
        union = logits(loaded)
    torch.testing.assert_close(nested, union, atol=1e-6, rtol=0)
    # Neither mask silently disables the other.
    assert not torch.allclose(nested, outer_only, atol=1e-4)
    assert not torch.allclose(nested, inner_only, atol=1e-4)
    assert torch.equal(logits(loaded), base)


def test_nested_scales_multiply_and_mix_with_space_masks(llama) -> None:
    twice = NeuronMask.from_pairs([(0, 3)], mode="scale", factor=2.0)
    thrice = NeuronMask.from_pairs([(0, 3)], mode="scale", factor=3.0)
    with apply_mask(llama, twice), apply_mask(llama, thrice):
        nested = logits(llama)
    with apply_mask(llama, NeuronMask.from_pairs([(0, 3)], mode="scale", factor=6.0)):
        once = logits(llama)
    torch.testing.assert_close(nested, once, atol=1e-5, rtol=0)

    # An mlp_out (down output) mask inside a neuron mask: both hold, in either order.
    out_mask = SpaceMask("mlp_out", NeuronMask.from_pairs([(1, 4), (1, 9)]))
    neurons = NeuronMask.from_pairs(A)
    with apply_mask(llama, neurons), apply_space_mask(llama, out_mask):
        first = logits(llama)
    with apply_space_mask(llama, out_mask), apply_mask(llama, neurons):
        second = logits(llama)
    with apply_mask(llama, neurons):
        neurons_only = logits(llama)
    torch.testing.assert_close(first, second, atol=1e-6, rtol=0)
    assert not torch.allclose(first, neurons_only, atol=1e-4)


def test_mask_and_lora_nest_either_way_like_the_merged_model(llama, factors) -> None:
    mask = NeuronMask.from_pairs(A + B)
    merged = merged_copy(llama, factors)
    with apply_mask(merged, mask):
        expected = logits(merged)
    with apply_lora(llama, factors), apply_mask(llama, mask):
        mask_inside = logits(llama)
    with apply_mask(llama, mask), apply_lora(llama, factors):
        lora_inside = logits(llama)
    torch.testing.assert_close(mask_inside, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(lora_inside, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(expected, logits(merged), atol=1e-3)  # the mask matters here
    with apply_mask(llama, mask):
        assert not torch.allclose(expected, logits(llama), atol=1e-3)  # and so does the update


def test_nested_lora_adds_both(llama, factors) -> None:
    second = random_factors(
        llama, ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.up_proj"], 2
    )
    with apply_lora(llama, factors), apply_lora(llama, second):
        nested = logits(llama)
    expected = logits(merged_copy(llama, factors, second))
    torch.testing.assert_close(nested, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(expected, logits(merged_copy(llama, factors)), atol=1e-3)


def test_capture_inside_a_mask_sees_the_masked_neurons(llama) -> None:
    mask = NeuronMask.from_pairs(A)
    plain = capture_activations(llama, [TEXT], (0, 1)).matrix
    with apply_mask(llama, mask):
        masked = capture_activations(llama, [TEXT], (0, 1)).matrix
    width = llama.architecture.neurons_per_layer[0]
    zeroed = [layer * width + n for layer, n in A]
    assert (masked[:, zeroed] == 0).all() and (plain[:, zeroed] != 0).any()
    rest = [n for n in range(width) if (0, n) not in A]  # layer 0's other neurons are untouched
    assert (masked[:, rest] == plain[:, rest]).all()


def test_nested_scopes_fire_outer_first_and_all_capture(llama) -> None:
    module = llama.architecture.down_module(llama.model, 0)
    order: list[str] = []

    def probe(tag: str):
        return [
            (module, "pre", lambda m, args: order.append(f"{tag}.pre")),
            (module, "forward", lambda m, args, out: order.append(f"{tag}.forward")),
        ]

    with scoped_hooks(llama, probe("outer"), name="probe"):
        with scoped_hooks(llama, probe("inner"), name="probe"):
            assert active_scopes() == ("probe", "probe")
            logits(llama)
        logits(llama)
    assert order == [
        "outer.pre",
        "inner.pre",
        "outer.forward",
        "inner.forward",
        "outer.pre",
        "outer.forward",
    ]


def test_another_thread_sees_the_base_model_or_only_its_own_scope(llama, factors) -> None:
    base = logits(llama)
    with apply_mask(llama, NeuronMask.from_pairs(B)):
        b_only = logits(llama)
    seen: dict[str, torch.Tensor] = {}
    inside, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            inside.wait(timeout=30)
            seen["plain"] = logits(llama)
            with apply_mask(llama, NeuronMask.from_pairs(B)):
                seen["own"] = logits(llama)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with apply_lora(llama, factors), apply_mask(llama, NeuronMask.from_pairs(A)):
        inside.set()
        done.wait(timeout=30)
        mine = logits(llama)
    thread.join(timeout=30)
    assert not errors, errors
    assert torch.equal(seen["plain"], base)
    assert torch.equal(seen["own"], b_only)
    assert not torch.allclose(mine, base, atol=1e-3)


def test_every_hook_comes_off_even_when_the_block_raises(llama, factors) -> None:
    before = hook_counts(llama)
    base = logits(llama)
    out_mask = SpaceMask("mlp_out", NeuronMask.from_pairs([(1, 4)]))

    def nested_then_raise() -> None:
        with (
            apply_mask(llama, NeuronMask.from_pairs(A)),
            apply_lora(llama, factors),
            apply_space_mask(llama, out_mask),
        ):
            assert len(active_scopes()) == 3
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        nested_then_raise()
    assert hook_counts(llama) == before
    assert active_scopes() == ()
    assert torch.equal(logits(llama), base)


def test_an_exclusive_scope_refuses_to_nest_at_entry(llama) -> None:
    before = hook_counts(llama)
    module = llama.architecture.down_module(llama.model, 0)
    fired: list[str] = []

    def enter(hooks, name: str, exclusive: bool = False) -> None:
        with scoped_hooks(llama, hooks, name=name, exclusive=exclusive):
            logits(llama)

    outer = [(module, "pre", lambda m, args: fired.append("outer"))]
    inner = [(module, "pre", lambda m, args: fired.append("inner"))]
    with scoped_hooks(llama, outer, name="LRP", exclusive=True):
        with pytest.raises(SubnetScopeError, match="LRP is already running in this call"):
            enter(inner, "LRP")
        with pytest.raises(SubnetScopeError, match="do not combine"):
            enter(inner, "LRP", exclusive=True)
        assert fired == []  # refused before any hook went on
        enter(inner, "mask")  # another kind of scope still combines with it
        assert active_scopes() == ("LRP",)
        logits(llama)
    assert fired == ["outer", "inner", "outer"]
    assert hook_counts(llama) == before
    with pytest.raises(SubnetScopeError, match="unknown hook kind"):
        enter([(module, "backward", print)], "x")
    assert hook_counts(llama) == before
