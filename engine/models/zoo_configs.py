"""The configs of the model zoo: real published shapes (layers, widths, heads, vocabularies,
attention patterns, RoPE), with none of their weights.

Each entry copies the public `config.json` of the model it mirrors, key for key where the key
changes a shape or a computation; `parameters` is the count the model's card publishes, which
tests/test_zoo.py checks against a count on torch's meta device (where one is published).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ZooSpec:
    name: str  # what `models zoo --build` and the zoo's sources take
    mirrors: str  # the hub id whose config.json this copies
    config: dict[str, Any] = field(repr=False)
    parameters: int | None  # the published count the meta-device count must give (None: none)
    note: str = ""
    buildable_here: bool = True  # False: too big for this project's CPU tests (a GPU builds it)


_LLAMA_3_ROPE = {
    "rope_type": "llama3",
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
}

LLAMA_3_2_1B = ZooSpec(
    name="llama-3.2-1b",
    mirrors="meta-llama/Llama-3.2-1B",
    parameters=1_235_814_400,
    config={
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "hidden_act": "silu",
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": _LLAMA_3_ROPE,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
    },
)

GEMMA_3_1B = ZooSpec(
    name="gemma-3-1b",
    mirrors="google/gemma-3-1b-pt",
    parameters=999_885_952,
    note="5 sliding-window (512) layers to 1 global, RoPE 10k local / 1M global, 262k vocabulary",
    config={
        "model_type": "gemma3_text",
        "architectures": ["Gemma3ForCausalLM"],
        "hidden_size": 1152,
        "intermediate_size": 6912,
        "num_hidden_layers": 26,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "hidden_activation": "gelu_pytorch_tanh",
        "vocab_size": 262144,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "query_pre_attn_scalar": 256,
        "sliding_window": 512,
        "sliding_window_pattern": 6,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "attention_bias": False,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
    },
)

GEMMA_3N_E2B_TEXT = ZooSpec(
    name="gemma-3n-e2b-text",
    mirrors="google/gemma-3n-E2B-it (text_config)",
    parameters=None,
    note=(
        "the text decoder only: AltUp over 4 streams, LAuReL rank 64, per-layer inputs of width "
        "256 (2.0B of its parameters are that per-layer embedding table), KV shared by the last "
        "10 layers, activation sparsity in the first 10; Google publishes no text-only count "
        "(the meta-device count is 4.44B; a third-party text-only export reports 4.46B)"
    ),
    buildable_here=False,
    config={
        "model_type": "gemma3n_text",
        "architectures": ["Gemma3nForCausalLM"],
        "hidden_size": 2048,
        "intermediate_size": [8192] * 30,
        "num_hidden_layers": 30,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "hidden_activation": "gelu_pytorch_tanh",
        "vocab_size": 262400,
        "vocab_size_per_layer_input": 262144,
        "hidden_size_per_layer_input": 256,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "sliding_window": 512,
        "layer_types": (["sliding_attention"] * 4 + ["full_attention"]) * 6,
        "final_logit_softcapping": 30.0,
        "altup_active_idx": 0,
        "altup_coef_clip": 120.0,
        "altup_correct_scale": True,
        "altup_num_inputs": 4,
        "laurel_rank": 64,
        "num_kv_shared_layers": 10,
        "activation_sparsity_pattern": [0.95] * 10 + [0.0] * 20,
        "attention_bias": False,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
    },
)

QWEN_2_5_0_5B = ZooSpec(
    name="qwen2.5-0.5b",
    mirrors="Qwen/Qwen2.5-0.5B",
    parameters=494_032_768,
    config={
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "max_window_layers": 24,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
    },
)

LLAMA_3_1_8B = ZooSpec(
    name="llama-3.1-8b",
    mirrors="meta-llama/Llama-3.1-8B",
    parameters=8_030_261_248,
    note="config only on this machine: its plan is computed on the meta device",
    buildable_here=False,
    config={
        **LLAMA_3_2_1B.config,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rope_scaling": {**_LLAMA_3_ROPE, "factor": 8.0},
        "tie_word_embeddings": False,
    },
)

GEMMA_3_27B_TEXT = ZooSpec(
    name="gemma-3-27b-text",
    mirrors="google/gemma-3-27b-pt (text_config)",
    parameters=None,
    note=(
        "config only: the text decoder (Google's 27B counts the vision tower too); for plans "
        "and docs/scale.md"
    ),
    buildable_here=False,
    config={
        **GEMMA_3_1B.config,
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "num_hidden_layers": 62,
        "num_attention_heads": 32,
        "num_key_value_heads": 16,
        "head_dim": 128,
        "query_pre_attn_scalar": 168,
        "sliding_window": 1024,
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    },
)

LLAMA_3_1_70B = ZooSpec(
    name="llama-3.1-70b",
    mirrors="meta-llama/Llama-3.1-70B",
    parameters=70_553_706_496,
    note="config only: for plans and docs/scale.md",
    buildable_here=False,
    config={
        **LLAMA_3_1_8B.config,
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 128,
    },
)

ZOO: dict[str, ZooSpec] = {
    spec.name: spec
    for spec in (
        QWEN_2_5_0_5B,
        LLAMA_3_2_1B,
        GEMMA_3_1B,
        GEMMA_3N_E2B_TEXT,
        LLAMA_3_1_8B,
        GEMMA_3_27B_TEXT,
        LLAMA_3_1_70B,
    )
}
