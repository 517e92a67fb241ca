"""FunctionalLoRA: equal to the no-grad delta path, differentiable into a generator, per call."""

from __future__ import annotations

import threading

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.lora.deltas import mean_last_state
from engine.lora.generator.functional import (
    delta_differentiable,
    functional_lora,
    last_state,
    probe_batch,
)
from engine.lora.generator.hypernet import ARCHS, GeneratorConfig, TargetSpec, build_generator
from engine.lora.generator.losses import delta_loss
from engine.lora.live import linear_shape
from engine.lora.lowrank import Factors

TEXTS = ["What is 2 + 3?", "Say hello.", "def f(x):\n    return x", "a"]
KINDS = {"gpt2": ("c_attn", "c_proj"), "llama": ("q_proj", "v_proj"), "qwen2": ("q_proj",)}


def _targets(loaded, kinds) -> tuple[TargetSpec, ...]:
    found = []
    for name, module in loaded.model.named_modules():
        if name.rsplit(".", 1)[-1] in kinds and linear_shape(module) is not None:
            d_out, d_in = linear_shape(module)
            found.append(TargetSpec(name, d_out, d_in))
    return tuple(found)


def _factors(targets, rank=2, seed=0, std=0.3) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        t.path: (
            std * torch.randn(rank, t.d_in, generator=g),
            std * torch.randn(t.d_out, rank, generator=g),
        )
        for t in targets
    }


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "gemma3", "gemma3n"])
def test_equals_mean_last_state(tiny_models, family):
    loaded = tiny_models[family]
    batch = probe_batch(loaded, TEXTS)
    assert batch.input_ids.shape == batch.attention_mask.shape == (4, len(TEXTS[2]))
    assert batch.last.tolist() == [len(t) - 1 for t in TEXTS]  # char tokenizer, right-padded
    torch.testing.assert_close(
        last_state(loaded, batch), mean_last_state(loaded, TEXTS), atol=1e-5, rtol=0
    )
    targets = _targets(loaded, KINDS.get(family, ("q_proj", "v_proj")))
    factors = _factors(targets)
    scale = 1.5
    plain = {p: Factors(b=b, a=a, scale=scale) for p, (a, b) in factors.items()}
    adapted = mean_last_state(loaded, TEXTS, plain, batch_size=3)
    got = last_state(loaded, batch, factors, scale)
    torch.testing.assert_close(got, adapted, atol=1e-5, rtol=0)
    assert got.dtype == torch.float32 and got.shape == adapted.shape
    assert (adapted - mean_last_state(loaded, TEXTS)).abs().max() > 1e-3  # the update matters
    base = mean_last_state(loaded, TEXTS)
    delta = delta_differentiable(loaded, batch, factors, scale, base)
    torch.testing.assert_close(delta, adapted - base, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_reaches_every_generator_parameter(llama, arch):
    targets = _targets(llama, ("q_proj", "v_proj"))
    config = GeneratorConfig(arch=arch, cond_dim=10, rank=2, alpha=4.0, targets=targets, hidden=16)
    torch.manual_seed(0)
    gen = build_generator(config)
    gen.set_anchor(_factors(targets, seed=1, std=0.1))
    batch = probe_batch(llama, TEXTS)
    base = last_state(llama, batch).detach()
    out = gen(torch.randn(2, 3, 10))  # (batch 2, 3 prompts, cond 10)
    computed = torch.stack(
        [
            delta_differentiable(
                llama, batch, {p: (a[k], b[k]) for p, (a, b) in out.items()}, config.scale, base
            )
            for k in range(2)
        ]
    )  # (2, hidden)
    loss = delta_loss(computed, torch.randn(2, computed.shape[1]))
    loss.backward()
    for name, param in gen.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in llama.model.parameters())


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_shared_model_untouched_and_private_to_the_call(llama):
    model = llama.model
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    targets = _targets(llama, ("q_proj", "v_proj"))
    a_b = {p: (a.requires_grad_(), b.requires_grad_()) for p, (a, b) in _factors(targets).items()}
    ids = probe_batch(llama, TEXTS)
    hooks_before = _hook_count(model)

    def logits() -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=ids.input_ids, attention_mask=ids.attention_mask).logits

    plain = logits()
    seen: dict[str, torch.Tensor] = {}
    with functional_lora(llama, a_b, 2.0):
        assert _hook_count(model) > hooks_before
        thread = threading.Thread(target=lambda: seen.setdefault("other", logits()))
        thread.start()
        thread.join()
        mine = logits()
        state = last_state(llama, ids, a_b, 2.0)  # nested: the two updates add
    assert not torch.allclose(mine, plain, atol=1e-4)
    torch.testing.assert_close(seen["other"], plain)  # another thread saw no update
    assert _hook_count(model) == hooks_before
    state.sum().backward()
    assert all(a.grad is not None and b.grad is not None for a, b in a_b.values())
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(logits(), plain)


def test_error_on_batched_factors(llama):
    targets = _targets(llama, ("q_proj",))
    batched = {t.path: (torch.zeros(1, 2, t.d_in), torch.zeros(1, t.d_out, 2)) for t in targets}
    with pytest.raises(SubnetScopeError, match="one adapter"):
        last_state(llama, probe_batch(llama, TEXTS), batched, 1.0)
