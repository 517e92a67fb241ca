"""Anti-drift parametrization: masked MLP neurons stay bit-identical through AdamW fine-tuning."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.utils import parametrize

from engine.errors import SubnetScopeError
from engine.models.architectures import detect_architecture
from engine.training.anti_drift import apply_anti_drift, drift, remove_anti_drift

STEPS = 5


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config)


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=16,
        n_layer=2,
        n_head=2,
        vocab_size=64,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)


def lora(model, modules, **kwargs):
    # detect_architecture reads the down projection's width from an nn.Linear or Conv1D, which a
    # peft LoRA layer is not: detect it on the plain model first (PEFT keeps the module paths).
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_peft_model(model, LoraConfig(r=4, target_modules=modules, **kwargs))


def half_mask(width: int) -> torch.Tensor:
    mask = torch.ones(width)
    mask[::2] = 0  # every other neuron frozen
    return mask


def train(model, steps: int = STEPS, grad_hook=None) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        if grad_hook is not None:
            grad_hook()
        optimizer.step()


def weight(model, name: str) -> torch.Tensor:
    """The effective value of a module's weight, parametrized or not."""
    return model.get_submodule(name).weight.detach().clone()


def neuron_slices(arch, layer: int, transposed: bool):
    """(module name, neuron axis) of the base weights that belong to a layer's neurons."""
    block = arch.blocks[layer]
    out_axis, in_axis = (1, 0) if transposed else (0, 1)
    return [(n, out_axis) for n in (block.up, block.gate) if n] + [(block.down, in_axis)]


def split(tensor: torch.Tensor, axis: int, frozen_idx: torch.Tensor):
    """The frozen and the trainable neuron slices of `tensor` along `axis`."""
    held = torch.zeros(tensor.shape[axis], dtype=torch.bool)
    held[frozen_idx] = True
    by_neuron = tensor.movedim(axis, 0)
    return by_neuron[held], by_neuron[~held]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_base_mode_holds_masked_neurons_bit_identical(family):
    model = (tiny_llama if family == "llama" else tiny_gpt2)()
    arch = detect_architecture(model)
    mask = half_mask(arch.neurons_per_layer[0])
    frozen_idx = (mask == 0).nonzero().squeeze(1)
    slices = neuron_slices(arch, 0, arch.transposed_weights)
    before = {name: weight(model, name) for name, _ in slices}
    up_bias = model.get_submodule(arch.blocks[0].up).bias
    bias_before = None if up_bias is None else up_bias.detach().clone()

    report = apply_anti_drift(model, arch, {0: mask}, apply_to="base")
    assert report.frozen_neurons == report.trainable_neurons == len(mask) // 2
    assert all("layers.1" not in n and ".h.1." not in n for n in report.parametrized)
    train(model)

    assert drift(model) == 0.0
    for name, axis in slices:
        held, trained = split(weight(model, name), axis, frozen_idx)
        held0, trained0 = split(before[name], axis, frozen_idx)
        assert torch.equal(held, held0), name
        assert not torch.equal(trained, trained0), name
    if bias_before is not None:  # GPT-2's c_fc bias is per neuron too
        bias = model.get_submodule(arch.blocks[0].up).bias.detach()
        assert torch.equal(bias[frozen_idx], bias_before[frozen_idx])
        assert f"{arch.blocks[0].up}.bias" in report.parametrized


def test_without_anti_drift_weight_decay_moves_masked_neurons():
    model = tiny_llama()
    arch = detect_architecture(model)
    frozen_idx = (half_mask(arch.neurons_per_layer[0]) == 0).nonzero().squeeze(1)
    slices = neuron_slices(arch, 0, transposed=False)
    before = {name: weight(model, name) for name, _ in slices}

    def lesion():  # the masked neurons get no gradient, as under an ICA lesion
        for name, axis in slices:
            model.get_submodule(name).weight.grad.index_fill_(axis, frozen_idx, 0)

    train(model, grad_hook=lesion)
    for name, axis in slices:
        held, _ = split(weight(model, name), axis, frozen_idx)
        assert not torch.equal(held, split(before[name], axis, frozen_idx)[0]), name


def lora_deltas(model, arch, layer: int) -> dict[str, torch.Tensor]:
    """B·A of each LoRA-wrapped MLP projection of `layer` (what the adapter adds to W)."""
    base = model.get_base_model()
    out = {}
    for name, _ in neuron_slices(arch, layer, transposed=False):
        module = base.get_submodule(name)
        out[name] = (module.lora_B["default"].weight @ module.lora_A["default"].weight).detach()
    return out


def test_lora_mode_holds_masked_neurons_and_leaves_base_alone():
    plain = tiny_llama()
    arch = detect_architecture(plain)  # before PEFT wraps the Linears (see lora())
    model = lora(plain, ["up_proj", "gate_proj", "down_proj"])
    base = model.get_base_model()
    frozen_idx = (half_mask(arch.neurons_per_layer[0]) == 0).nonzero().squeeze(1)
    base_before = {n: p.detach().clone() for n, p in base.named_parameters() if "lora_" not in n}

    report = apply_anti_drift(model, arch, {0: half_mask(arch.neurons_per_layer[0])}, "lora")
    assert sorted(report.parametrized) == [
        "model.layers.0.mlp.down_proj.lora_A.default.weight",
        "model.layers.0.mlp.gate_proj.lora_B.default.weight",
        "model.layers.0.mlp.up_proj.lora_B.default.weight",
    ]
    up, down = (base.get_submodule(arch.blocks[0].up), base.get_submodule(arch.blocks[0].down))
    held_b = up.lora_B["default"].weight.detach()[frozen_idx].clone()
    held_a = down.lora_A["default"].weight.detach()[:, frozen_idx].clone()
    assert not held_b.any() and not held_a.any()  # both held at 0: what a fresh adapter adds
    train(model)

    assert drift(model) == 0.0
    assert torch.equal(up.lora_B["default"].weight.detach()[frozen_idx], held_b)
    assert torch.equal(down.lora_A["default"].weight.detach()[:, frozen_idx], held_a)
    for name, delta in lora_deltas(model, arch, 0).items():
        axis = 1 if name.endswith("down_proj") else 0
        held, trained = split(delta, axis, frozen_idx)
        assert not held.any(), name  # the adapter adds exactly nothing to the masked neurons
        assert trained.any(), name
    for n, p in base.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p.detach(), base_before[n]), n


def test_lora_down_a_column_held_at_its_init_would_still_move_the_neuron():
    # Why lora mode holds down's A columns at 0: B trains, so B·A[:, i] leaves 0 anyway.
    plain = tiny_llama()
    arch = detect_architecture(plain)
    model = lora(plain, ["down_proj"])
    frozen_idx = (half_mask(arch.neurons_per_layer[0]) == 0).nonzero().squeeze(1)
    down = model.get_base_model().get_submodule(arch.blocks[0].down)
    a = down.lora_A["default"].weight
    a_init = a.detach().clone()

    def hold_a():
        a.grad[:, frozen_idx] = 0

    train(model, grad_hook=hold_a)
    with torch.no_grad():
        a[:, frozen_idx] = a_init[:, frozen_idx]  # as if weight decay had not moved it either
    assert (down.lora_B["default"].weight @ a)[:, frozen_idx].detach().abs().max() > 0


def test_lora_on_gpt2_conv1d_uses_unflipped_factor_axes():
    plain = tiny_gpt2()
    arch = detect_architecture(plain)
    model = lora(plain, ["c_fc", "mlp.c_proj"], fan_in_fan_out=True)
    mask = half_mask(arch.neurons_per_layer[0])
    frozen_idx = (mask == 0).nonzero().squeeze(1)
    report = apply_anti_drift(model, arch, {0: mask})  # auto → lora on a PEFT model
    assert all("lora_" in n for n in report.parametrized) and len(report.parametrized) == 2
    train(model)
    assert drift(model) == 0.0
    for name, delta in lora_deltas(model, arch, 0).items():
        axis = 1 if name.endswith("c_proj") else 0  # B·A is (out, in) here, not Conv1D's (in, out)
        held, trained = split(delta, axis, frozen_idx)
        assert not held.any() and trained.any(), name


def test_auto_and_both_pick_their_tensors():
    plain = tiny_llama()
    arch = detect_architecture(plain)
    mask = {1: half_mask(arch.neurons_per_layer[1])}
    names = apply_anti_drift(plain, arch, mask).parametrized
    assert sorted(names) == [
        f"model.layers.1.mlp.{m}.weight" for m in ("down_proj", "gate_proj", "up_proj")
    ]

    peft_model = lora(tiny_llama(), ["up_proj", "gate_proj", "down_proj"])
    auto = apply_anti_drift(peft_model, arch, mask).parametrized
    assert len(auto) == 3 and all("lora_" in n for n in auto)
    remove_anti_drift(peft_model)

    both = apply_anti_drift(peft_model, arch, mask, apply_to="both").parametrized
    assert len(both) == 6
    assert sum("base_layer" in n for n in both) == 3 and sum("lora_" in n for n in both) == 3
    frozen_base = peft_model.get_base_model().get_submodule("model.layers.1.mlp.up_proj.base_layer")
    assert parametrize.is_parametrized(frozen_base, "weight")
    assert not frozen_base.parametrizations.weight.original.requires_grad  # stays frozen


def test_bake_keeps_trained_weights_and_unbake_restores_originals():
    for bake in (True, False):
        model = tiny_llama()
        arch = detect_architecture(model)
        keys = set(model.state_dict())
        originals = {n: p.detach().clone() for n, p in model.named_parameters()}
        report = apply_anti_drift(model, arch, {0: half_mask(arch.neurons_per_layer[0])})
        params = {n: model.get_submodule(n.rsplit(".", 1)[0]) for n in report.parametrized}
        ids = {n: id(m.parametrizations.weight.original) for n, m in params.items()}
        train(model, steps=2)
        trained = {n: m.weight.detach().clone() for n, m in params.items()}

        assert sorted(remove_anti_drift(model, bake=bake)) == sorted(report.parametrized)
        assert set(model.state_dict()) == keys
        assert "model.layers.0.mlp.down_proj.weight" in keys
        for n, module in params.items():
            assert not parametrize.is_parametrized(module)
            assert id(module.weight) == ids[n] and module.weight.requires_grad
            expected = trained[n] if bake else originals[n]
            assert torch.equal(module.weight.detach(), expected), n
            assert bake != torch.equal(module.weight.detach(), originals[n]), n
        assert drift(model) == 0.0 and remove_anti_drift(model) == []


def test_buffers_follow_the_model_dtype():
    model = tiny_llama()
    arch = detect_architecture(model)
    apply_anti_drift(model, arch, {0: half_mask(arch.neurons_per_layer[0])})
    model.double()
    train(model, steps=1)
    assert model.get_submodule("model.layers.0.mlp.up_proj").weight.dtype == torch.float64
    assert drift(model) == 0.0


def test_errors_are_one_clear_sentence():
    model = tiny_llama()
    arch = detect_architecture(model)
    mask = {0: half_mask(arch.neurons_per_layer[0])}
    with pytest.raises(SubnetScopeError, match="needs LoRA adapters"):
        apply_anti_drift(model, arch, mask, apply_to="lora")
    with pytest.raises(SubnetScopeError, match="choose one of auto, lora, base, both"):
        apply_anti_drift(model, arch, mask, apply_to="bogus")
    with pytest.raises(SubnetScopeError, match=r"must be a \(32,\) tensor"):
        apply_anti_drift(model, arch, {0: torch.ones(5)})
    with pytest.raises(SubnetScopeError, match="only 0"):
        apply_anti_drift(model, arch, {0: torch.full((32,), 0.5)})
    with pytest.raises(SubnetScopeError, match="not a layer index"):
        apply_anti_drift(model, arch, {7: torch.ones(32)})
    apply_anti_drift(model, arch, mask)
    with pytest.raises(SubnetScopeError, match="already parametrized"):
        apply_anti_drift(model, arch, mask)

    used = lora(tiny_llama(), ["down_proj"], init_lora_weights=False)  # B random: not fresh
    with pytest.raises(SubnetScopeError, match="already changes masked neurons"):
        apply_anti_drift(used, arch, mask, apply_to="lora")


def test_architecture_of_a_peft_model_is_the_plain_one():
    plain = detect_architecture(tiny_llama())
    model = lora(tiny_llama(), ["down_proj"])
    arch = detect_architecture(model.get_base_model())  # LoRA layers unwrap to their base_layer
    assert arch == plain and not arch.fallback
    report = apply_anti_drift(model, arch, {0: half_mask(arch.neurons_per_layer[0])})
    assert report.parametrized == ["model.layers.0.mlp.down_proj.lora_A.default.weight"]
