"""Adapter sets: PEFT folders read exactly (scaling, rank/alpha patterns), mismatches refused."""

from __future__ import annotations

import json

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.lora.adapters import (
    base_shapes,
    load_adapter,
    load_adapter_set,
    module_kind,
    module_layer,
    module_shapes,
)
from tests.lora_support import make_adapter, make_adapters, peft_delta, peft_model_with
from tests.tiny import tiny_model


def test_module_layer_and_kind() -> None:
    assert module_layer("model.layers.3.self_attn.q_proj") == 3
    assert module_layer("transformer.h.11.attn.c_attn") == 11
    assert module_layer("lm_head") is None
    assert module_kind("model.layers.3.self_attn.q_proj") == "q_proj"


def test_load_adapter_matches_peft_delta(tmp_path) -> None:
    path = make_adapter(tmp_path / "a", 0, r=4, alpha=8)
    adapter = load_adapter(path)
    info = adapter.info
    assert (info.name, info.rank, info.alpha, info.use_rslora, info.scaling) == (
        "a",
        4,
        8,
        False,
        2,
    )
    assert info.target_modules == ("q_proj", "v_proj")
    assert info.modules == (
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.v_proj",
        "model.layers.1.self_attn.q_proj",
        "model.layers.1.self_attn.v_proj",
    )
    peft = peft_model_with([path])
    for module, f in adapter.factors.items():
        assert f.b.shape[1] == f.a.shape[0] == 4
        torch.testing.assert_close(f.dense(), peft_delta(peft, module, "a0"), rtol=1e-5, atol=1e-6)


def test_rslora_and_patterns_give_peft_scaling_per_module(tmp_path) -> None:
    path = make_adapter(
        tmp_path / "p",
        1,
        r=4,
        alpha=8,
        rslora=True,
        rank_pattern={"layers.1.self_attn.q_proj": 2},
        alpha_pattern={"v_proj": 3},
    )
    adapter = load_adapter(path)
    assert adapter.info.use_rslora and adapter.info.scaling == pytest.approx(8 / 2)
    peft = peft_model_with([path])
    for module, f in adapter.factors.items():
        layer = peft.base_model.model.get_submodule(module)
        assert f.scale == pytest.approx(layer.scaling["a0"]), module
        torch.testing.assert_close(f.dense(), peft_delta(peft, module, "a0"), rtol=1e-5, atol=1e-6)
    assert adapter.factors["model.layers.1.self_attn.q_proj"].rank == 2
    assert adapter.factors["model.layers.0.self_attn.v_proj"].scale == pytest.approx(3 / 2)


def test_gpt2_conv1d_adapter_has_linear_layout(tmp_path) -> None:
    path = make_adapter(tmp_path / "g", 0, family="gpt2", targets=("c_attn",))
    adapter = load_adapter(path)
    shapes = module_shapes(tiny_model("gpt2").model)
    f = adapter.factors["transformer.h.0.attn.c_attn"]
    assert f.shape == shapes["transformer.h.0.attn.c_attn"] == (96, 32)
    peft = peft_model_with([path], family="gpt2")
    torch.testing.assert_close(
        f.dense(), peft_delta(peft, "transformer.h.0.attn.c_attn", "a0"), rtol=1e-5, atol=1e-6
    )


def test_set_shares_modules_in_layer_order(tmp_path) -> None:
    adapters = load_adapter_set(make_adapters(tmp_path, 3))
    assert adapters.names == ("a0", "a1", "a2")
    assert adapters.modules[0] == "model.layers.0.self_attn.q_proj"
    assert adapters.shape("model.layers.0.self_attn.v_proj") == (16, 32)


def test_same_folder_names_get_parent_names(tmp_path) -> None:
    a = make_adapter(tmp_path / "x" / "adapter", 0)
    b = make_adapter(tmp_path / "y" / "adapter", 1)
    assert load_adapter_set([a, b]).names == ("x/adapter", "y/adapter")


def test_different_ranks_are_one_set(tmp_path) -> None:
    a = make_adapter(tmp_path / "r4", 0, r=4)
    b = make_adapter(tmp_path / "r8", 1, r=8)
    assert [x.info.rank for x in load_adapter_set([a, b]).adapters] == [4, 8]


def _error(paths, **kwargs) -> str:
    with pytest.raises(SubnetScopeError) as info:
        load_adapter_set(paths, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shape_mismatch_names_the_adapter_and_module(tmp_path) -> None:
    a = make_adapter(tmp_path / "llama", 0)
    b = make_adapter(tmp_path / "qwen", 1, family="qwen2")  # same paths and shapes: accepted
    load_adapter_set([a, b])
    # Same paths, other shapes: a k_proj (16 out) read as if it were q_proj (32 out).
    c = make_adapter(tmp_path / "odd", 2, targets=("q_proj", "v_proj"))
    config = json.loads((c / "adapter_config.json").read_text())
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(c / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    tensors[key] = torch.zeros(48, 4)
    save_file(tensors, str(c / "adapter_model.safetensors"))
    (c / "adapter_config.json").write_text(json.dumps(config))
    message = _error([a, c])
    assert (
        "'odd'" in message and "model.layers.0.self_attn.q_proj" in message and "48×32" in message
    )


def test_missing_module_is_named(tmp_path) -> None:
    a = make_adapter(tmp_path / "qv", 0)
    b = make_adapter(tmp_path / "q", 1, targets=("q_proj",))
    message = _error([a, b])
    assert "'q' lacks model.layers.0.self_attn.v_proj" in message
    message = _error([b, a])
    assert "'qv' targets model.layers.0.self_attn.v_proj" in message


def test_dora_and_other_peft_types_are_refused(tmp_path) -> None:
    dora = make_adapter(tmp_path / "dora", 0, dora=True)
    assert "'dora' uses DoRA" in _error([dora])
    ia3 = tmp_path / "ia3"
    ia3.mkdir()
    (ia3 / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    assert "IA3 adapter" in _error([ia3])


def test_bad_folders(tmp_path) -> None:
    assert "no such folder" in _error([tmp_path / "nope"])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no adapter_config.json" in _error([empty])
    a = make_adapter(tmp_path / "a", 0)
    (a / "adapter_model.safetensors").unlink()
    (a / "adapter_model.bin").write_bytes(b"not read")
    assert "never pickles" in _error([a])
    assert "2 adapter names for 1" in _error([a], names=["x", "y"])


def test_other_base_name_with_the_same_shapes_is_a_warning(tmp_path) -> None:
    a = make_adapter(tmp_path / "a", 0, base_name="org/base-a")
    b = make_adapter(tmp_path / "b", 1, base_name="org/base-b")
    [warning] = load_adapter_set([a, b]).warnings
    assert "'b' names its base 'org/base-b'" in warning


def test_architecture_check(tmp_path, tiny_folder) -> None:
    folder = tiny_folder("llama")
    architecture, shapes = base_shapes(folder)
    assert shapes["model.layers.0.self_attn.k_proj"] == (16, 32)
    a = make_adapter(tmp_path / "a", 0, targets=("q_proj", "up_proj"))
    assert load_adapter_set([a], architecture=architecture, shapes=shapes).names == ("a",)
    # Architecture alone: layer counts and MLP shapes are checked.
    assert load_adapter_set([a], architecture=architecture).names == ("a",)
    fewer = {k: v for k, v in shapes.items() if "layers.1." not in k}
    message = _error([a], architecture=architecture, shapes=fewer)
    assert "targets model.layers.1.self_attn.q_proj" in message and "does not have" in message
    gpt2 = make_adapter(tmp_path / "g", 0, family="gpt2", targets=("c_attn",))
    assert "does not have" in _error([gpt2], architecture=architecture, shapes=shapes)
