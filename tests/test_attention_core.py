"""The attention area's core: layout from configs, statistics against a brute-force computation
on eager attentions, the per-call window ablation against a model's own local layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.attention import attention_layout, attention_map, head_stats, localized
from engine.errors import SubnetScopeError
from engine.models import scoped_hooks, wrap_model
from tests.tiny import char_tokenizer, tiny_config, tiny_model

DECODERS = ("gpt2", "llama", "qwen2", "gemma3", "gemma3n")
TEXTS = [
    "The quick brown fox jumps over the lazy dog, again and again and again.",
    "def add(a, b):\n    return a + b  # plus",
    "short",
]


def _eager(family: str):
    loaded = tiny_model(family)
    loaded.model.set_attn_implementation("eager")
    return loaded


def brute_force(loaded, texts: list[str], window: int, max_tokens: int) -> np.ndarray:
    """(layers, heads, 4) means of entropy, distance, window share, sink from output_attentions."""
    sums, rows = None, 0
    for text in texts:
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"][:, :max_tokens]
        if ids.shape[1] < 2:
            continue
        with torch.no_grad():
            out = loaded.model(input_ids=ids, output_attentions=True, use_cache=False)
        maps = torch.stack(out.attentions)[:, 0].double().numpy()  # (layers, heads, T, T)
        t = maps.shape[-1]
        i, j = np.arange(t)[:, None], np.arange(t)[None, :]
        dist = np.where(j <= i, i - j, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(maps > 0, maps * np.log(maps), 0.0)
        stats = np.stack(
            [
                -plogp.sum(-1),
                (maps * dist).sum(-1),
                (maps * ((dist < window) & (j <= i))).sum(-1),
                maps[..., 0],
            ],
            axis=-1,
        )[:, :, 1:]  # query positions 1..T-1
        total = stats.sum(axis=2)
        sums = total if sums is None else sums + total
        rows += t - 1
    return sums / rows


@pytest.mark.parametrize("family", DECODERS)
def test_statistics_equal_brute_force_on_eager_attentions(family):
    eager = _eager(family)
    expected = brute_force(eager, TEXTS, window=5, max_tokens=48)
    for loaded in (tiny_model(family), eager):  # sdpa (the default) and eager
        stats = head_stats(loaded, TEXTS, window=5, max_tokens=48, block_bytes=2048)
        frame = stats.frame.sort_values(["layer", "head"])
        got = frame[["entropy", "distance", "window_share", "sink"]].to_numpy()
        np.testing.assert_allclose(got, expected.reshape(-1, 4), rtol=1e-4, atol=1e-5)
        assert stats.texts == 3 and stats.largest_block_bytes <= 2048


@pytest.mark.parametrize("family", ("llama", "gemma3"))
def test_map_equals_output_attentions(family):
    eager = _eager(family)
    text = TEXTS[0]
    ids = eager.tokenizer(text, return_tensors="pt")["input_ids"][:, :40]
    with torch.no_grad():
        expected = eager.model(input_ids=ids, output_attentions=True).attentions[1][0]
    got = attention_map(tiny_model(family), text, 1, max_tokens=40)
    assert got.probs.shape == tuple(expected.shape) and len(got.tokens) == 40
    np.testing.assert_allclose(got.probs, expected.numpy(), atol=1e-5)


def test_no_hook_leaves_every_implementation_bit_identical(monkeypatch):
    from transformers.modeling_utils import AttentionInterface

    ids = torch.tensor([list(range(3, 40))])
    for family in DECODERS:
        for loaded in (tiny_model(family), _eager(family)):
            with scoped_hooks(loaded, [], name="nothing"):
                head_stats(loaded, ["warm up the dispatcher"], max_tokens=32)  # installs it
            with torch.no_grad():
                dispatched = loaded.model(input_ids=ids).logits
            with monkeypatch.context() as patch:
                mapping = AttentionInterface._global_mapping
                patch.setitem(mapping, "sdpa", mapping["sdpa"].original)
                patch.delitem(mapping, "eager")
                with torch.no_grad():
                    original = loaded.model(input_ids=ids).logits
            assert torch.equal(dispatched, original), family


def test_layouts_read_from_configs():
    from transformers import Gemma3TextConfig, GPT2Config, Qwen2Config

    gemma = attention_layout(Gemma3TextConfig(num_hidden_layers=12, sliding_window=512))
    assert [e.layer for e in gemma if e.kind == "global"] == [5, 11]
    assert gemma[0].window == 512 and gemma[0].rope_theta == 1e4
    assert gemma[5].window is None and gemma[5].rope_theta == 1e6
    assert (gemma[0].heads, gemma[0].kv_heads, gemma[0].head_dim) == (8, 4, 256)
    gpt2 = attention_layout(GPT2Config(n_layer=2, n_head=4, n_embd=64))
    assert gpt2[1].kind == "global" and gpt2[1].rope_theta is None and gpt2[1].head_dim == 16
    qwen = attention_layout(Qwen2Config(num_hidden_layers=2, hidden_size=64, num_attention_heads=4))
    assert qwen[0].head_dim == 16 and qwen[0].kind == "global"
    n = attention_layout(tiny_config("gemma3n"))
    assert [e.kind for e in n] == ["local", "global"] and n[0].window == 16


def _gemma_pair(window: int = 8):
    """The same weights twice: layer 0 local (its own sliding window) / every layer global; equal
    RoPE bases for both layer types, so only the mask differs."""
    from transformers import AutoModelForCausalLM

    loaded = []
    for types in (["sliding_attention", "full_attention"], ["full_attention", "full_attention"]):
        config = tiny_config("gemma3")
        config.layer_types = types
        config.sliding_window = window
        config.rope_parameters = {
            t: {"rope_type": "default", "rope_theta": 1e4}
            for t in ("sliding_attention", "full_attention")
        }
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
        loaded.append(model)
    loaded[1].load_state_dict(loaded[0].state_dict())
    return [wrap_model(m, char_tokenizer(), source=f"gemma-{i}") for i, m in enumerate(loaded)]


@pytest.mark.parametrize("implementation", ("sdpa", "eager"))
def test_localized_global_layer_equals_the_models_own_local_layer(implementation):
    local, global_ = _gemma_pair()
    for loaded in (local, global_):
        loaded.model.set_attn_implementation(implementation)
    ids = torch.tensor([list(range(3, 43))])  # 40 tokens > the window of 8
    with torch.no_grad():
        expected = local.model(input_ids=ids).logits
        plain = global_.model(input_ids=ids).logits
        with localized(global_, [0], 8):
            got = global_.model(input_ids=ids).logits
        after = global_.model(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain, expected, atol=1e-3)  # the window matters at this length
    assert torch.equal(after, plain)  # nothing left behind
    # Generation with a KV cache: token for token the same as the built-in local layer.
    prompt = ids[:, :12]
    with torch.no_grad():
        want = local.model.generate(prompt, max_new_tokens=24, do_sample=False)
        with localized(global_, [0], 8):
            have = global_.model.generate(prompt, max_new_tokens=24, do_sample=False)
    assert torch.equal(have, want)


def test_localize_refuses_bad_layers_and_windows():
    local, _ = _gemma_pair()
    with pytest.raises(SubnetScopeError, match="already local"), localized(local, [0], 4):
        pass
    with pytest.raises(SubnetScopeError, match="out of range"), localized(local, [7], 4):
        pass
    with pytest.raises(SubnetScopeError, match="window"), localized(local, [1], 0):
        pass


def test_capture_inside_localize_sees_the_window():
    loaded = tiny_model("llama")
    text = [TEXTS[0]]
    plain = head_stats(loaded, text, window=4, max_tokens=48).frame
    with localized(loaded, [1], 4):
        local = head_stats(loaded, text, window=4, max_tokens=48).frame
    assert np.allclose(local[local.layer == 1].window_share, 1.0)
    assert np.allclose(local[local.layer == 0].window_share, plain[plain.layer == 0].window_share)
    assert (plain[plain.layer == 1].window_share < 0.99).all()


def test_statistics_on_a_long_text_stay_within_the_block_bound():
    from transformers import AutoModelForCausalLM

    config = tiny_config("llama")
    config.max_position_embeddings = 4096
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    loaded = wrap_model(model, char_tokenizer(), source="tiny-long")
    text = ("a long text of many characters, " * 80)[:2000]
    bound = 64 * 1024
    small = head_stats(loaded, [text], max_tokens=2000, block_bytes=bound)
    whole = head_stats(loaded, [text], max_tokens=2000, block_bytes=2**30)
    full_map = 2 * 2000 * 2000 * 4  # heads · T² · 4 bytes: one layer's attention map
    assert small.largest_block_bytes <= bound < full_map // 400
    assert whole.largest_block_bytes == full_map
    cols = ["entropy", "distance", "window_share", "sink"]
    np.testing.assert_allclose(small.frame[cols], whole.frame[cols], rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_one_sentence():
    loaded = tiny_model("llama")
    with pytest.raises(SubnetScopeError, match="positions"):
        head_stats(loaded, TEXTS, max_tokens=500)
    with pytest.raises(SubnetScopeError, match="no texts"):
        head_stats(loaded, [" "], max_tokens=32)
    with pytest.raises(SubnetScopeError, match="encoder"):
        head_stats(tiny_model("bert"), TEXTS, max_tokens=32)


def test_sinks_keep_the_first_tokens_visible():
    from engine.attention.localize import window_keep

    keep = window_keep(6, 6, 2, torch.device("cpu"), sinks=1)
    expected = torch.tensor(
        [[j <= i and (i - j < 2 or j == 0) for j in range(6)] for i in range(6)]
    )
    assert torch.equal(keep & torch.ones(6, 6, dtype=torch.bool).tril(), expected)
    loaded = tiny_model("llama")
    with localized(loaded, [1], 4, sinks=1):
        frame = head_stats(loaded, [TEXTS[0]], window=4, max_tokens=48).frame
    layer = frame[frame.layer == 1]
    outside = 1 - layer.window_share  # mass outside the window: only the first token may hold it
    assert (outside <= layer.sink + 1e-5).all() and (outside > 1e-3).all()


def test_a_localized_call_is_invisible_to_another_thread():
    import threading

    loaded = tiny_model("llama")
    ids = torch.tensor([list(range(3, 43))])
    with torch.no_grad():
        plain = loaded.model(input_ids=ids).logits
    inside, seen = threading.Event(), {}

    def other() -> None:
        inside.wait()
        with torch.no_grad():
            seen["logits"] = loaded.model(input_ids=ids).logits

    thread = threading.Thread(target=other)
    thread.start()
    with localized(loaded, [0, 1], 2), torch.no_grad():
        inside.set()
        thread.join()
        local = loaded.model(input_ids=ids).logits
    assert torch.equal(seen["logits"], plain) and not torch.allclose(local, plain)
