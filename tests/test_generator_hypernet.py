"""LoRA generators: output shapes of both architectures, the anchor, save/load and the config."""

from __future__ import annotations

import json

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.lora.generator.hypernet import (
    ARCHS,
    GeneratorConfig,
    TargetSpec,
    build_generator,
    chunk_width,
    load_generator,
    save_generator,
)

# Two layers of a tiny Llama's q_proj (32 → 32) and v_proj (32 → 16), plus an odd-sized module.
TARGETS = (
    TargetSpec("model.layers.0.self_attn.q_proj", 32, 32),
    TargetSpec("model.layers.0.self_attn.v_proj", 16, 32),
    TargetSpec("model.layers.1.self_attn.q_proj", 32, 32),
    TargetSpec("model.layers.1.self_attn.v_proj", 16, 32),
    TargetSpec("model.layers.1.mlp.down_proj", 32, 48),
)


def _config(arch: str, delta_dim: int = 0, targets=TARGETS) -> GeneratorConfig:
    return GeneratorConfig(
        arch=arch, cond_dim=12, rank=3, alpha=6.0, targets=targets, hidden=32, delta_dim=delta_dim
    )


def _anchor(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        t.path: (torch.randn(3, t.d_in, generator=g), torch.randn(t.d_out, 3, generator=g))
        for t in TARGETS
    }


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes(arch):
    torch.manual_seed(0)
    gen = build_generator(_config(arch, delta_dim=20))
    for n_prompts in (1, 5, 8, 11):
        out = gen(torch.randn(4, n_prompts, 12))
        assert list(out) == [t.path for t in TARGETS]
        for t in TARGETS:
            a, b = out[t.path]
            assert a.shape == (4, 3, t.d_in) and b.shape == (4, t.d_out, 3)
            assert a.dtype == b.dtype == torch.float32
    assert gen.predict_delta(torch.randn(4, 5, 12)).shape == (4, 20)
    with pytest.raises(SubnetScopeError, match="conditions"):
        gen(torch.randn(4, 12))
    with pytest.raises(SubnetScopeError, match="no δ head"):
        build_generator(_config(arch)).predict_delta(torch.randn(1, 2, 12))


def test_hyperconv_tokenization():
    assert chunk_width(TARGETS) == 16  # gcd 16
    demo = (TargetSpec("q", 576, 576), TargetSpec("v", 192, 576))
    assert chunk_width(demo) == 96  # SmolLM2-135M: 576 = 6·96, 192 = 2·96
    assert chunk_width((TargetSpec("odd", 7, 9),)) == 9  # no divisor ≥ 16: min(64, largest)
    gen = build_generator(_config("hyperconv"))
    # q: A 2 + Bᵀ 2 tokens, v: 2 + 1, down: A 3 + Bᵀ 2.
    assert gen.n_tokens == 4 + 3 + 4 + 3 + 5
    # De-tokenizing inverts the chunking: token j of A holds columns j·W … (j+1)·W.
    tokens = torch.arange(2 * 3 * 3 * 16, dtype=torch.float32).reshape(2, 3, 3, 16)  # (b, n, r, W)
    a = gen._untokenize(tokens, 40)
    assert a.shape == (2, 3, 40)
    assert torch.equal(a[:, :, 16:32], tokens[:, 1])
    assert torch.equal(a[:, :, 32:40], tokens[:, 2, :, :8])


@pytest.mark.parametrize("arch", ARCHS)
def test_anchor(arch):
    torch.manual_seed(0)
    gen = build_generator(_config(arch))
    cond = torch.randn(2, 4, 12)
    zero = gen(cond)
    anchor = _anchor()
    gen.set_anchor(anchor)
    out = gen(cond)
    for path, (a, b) in out.items():
        # Output = anchor + the same residual as before.
        torch.testing.assert_close(a - anchor[path][0], zero[path][0])
        torch.testing.assert_close(b - anchor[path][1], zero[path][1])
        if arch == "mlp":  # heads start small: the first output is the anchor
            torch.testing.assert_close(a, anchor[path][0].expand_as(a), atol=1e-2, rtol=0)
            torch.testing.assert_close(b, anchor[path][1].expand_as(b), atol=1e-2, rtol=0)
    with pytest.raises(SubnetScopeError, match="has A"):
        gen.set_anchor({**anchor, TARGETS[0].path: (torch.zeros(2, 32), torch.zeros(32, 2))})
    with pytest.raises(SubnetScopeError, match="no factors"):
        gen.set_anchor({})


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(arch, tmp_path):
    torch.manual_seed(1)
    gen = build_generator(_config(arch, delta_dim=8))
    gen.set_anchor(_anchor(2))
    save_generator(gen, tmp_path / "gen")
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == [
        "generator.json",
        "generator.safetensors",
    ]
    loaded = load_generator(tmp_path / "gen")
    assert loaded.config == gen.config
    cond = torch.randn(3, 6, 12)
    gen.eval()
    with torch.no_grad():
        before, after = gen(cond), loaded(cond)
        assert torch.equal(gen.predict_delta(cond), loaded.predict_delta(cond))
    for path in before:
        assert torch.equal(before[path][0], after[path][0])
        assert torch.equal(before[path][1], after[path][1])


def test_load_errors(tmp_path):
    with pytest.raises(SubnetScopeError, match="holds no saved generator"):
        load_generator(tmp_path)
    gen = build_generator(_config("mlp"))
    save_generator(gen, tmp_path / "gen")
    meta = json.loads((tmp_path / "gen" / "generator.json").read_text())
    meta["config"]["hidden"] = 64
    (tmp_path / "gen" / "generator.json").write_text(json.dumps(meta))
    with pytest.raises(SubnetScopeError, match="does not match its config"):
        load_generator(tmp_path / "gen")
    meta["format"] = "other"
    (tmp_path / "gen" / "generator.json").write_text(json.dumps(meta))
    with pytest.raises(SubnetScopeError, match="is not a"):
        load_generator(tmp_path / "gen")


def test_config_json_round_trip():
    config = _config("hyperconv", delta_dim=7)
    text = json.dumps(config.to_json())
    assert GeneratorConfig.from_json(json.loads(text)) == config
    assert config.scale == 2.0
    assert TARGETS[1].kind == "v_proj"
    with pytest.raises(SubnetScopeError, match="unknown generator architecture"):
        _config("transformer")
    with pytest.raises(SubnetScopeError, match="repeat a path"):
        _config("mlp", targets=(TARGETS[0], TARGETS[0]))
    with pytest.raises(SubnetScopeError, match="malformed"):
        GeneratorConfig.from_json({"arch": "mlp"})
