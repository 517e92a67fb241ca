"""The converter-made samples: which Hugging Face model each one converts, and how.

Light (no torch): the explorer's file list and `tflite samples` read it. `build.py` makes each
source folder and runs Google's converter on it (scripts/convert_hf.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

# scripts/setup_converter.sh installs exactly this; a sample is rebuilt when it changes.
CONVERTER = "litert-torch"
CONVERTER_VERSION = "0.10.0"
INT8 = "dynamic_wi8_afp32"  # the converter's default: int8 weights, float activations
FP32 = "none"


@dataclass(frozen=True)
class SampleSpec:
    """One converter-made sample."""

    name: str
    family: str  # the Hugging Face model_type
    title: str
    # "demo": the demo model's own weights (SmolLM2-135M-Instruct); "config": random weights of
    # `config` (seeded), with the demo model's tokenizer
    source: str
    quantization: str = FP32
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    prefill: int = 32
    cache_length: int = 128

    @property
    def key(self) -> str:
        """Changes whenever what the sample is made of changes."""
        text = json.dumps({**asdict(self), "converter": CONVERTER_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def converter_options(self) -> dict[str, Any]:
        return {
            "prefill_lengths": [self.prefill],
            "cache_length": self.cache_length,
            "quantization_recipe": self.quantization,
        }


_VOCAB = 49152  # the demo model's tokenizer
_GEMMA3 = {
    "model_type": "gemma3_text",
    "vocab_size": _VOCAB,
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    # Gemma 3's pattern: five local (sliding-window) layers, then one global
    "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
    "sliding_window": 32,
    "rope_parameters": {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
    },
    "tie_word_embeddings": True,
}
_GEMMA3N = {
    "model_type": "gemma3n_text",
    "vocab_size": _VOCAB,
    "vocab_size_per_layer_input": _VOCAB,
    "hidden_size": 64,
    # MatFormer: the widths a mix-n-match sub-model sets per layer
    "intermediate_size": [192, 128, 192, 96],
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "hidden_size_per_layer_input": 16,
    "altup_num_inputs": 4,
    "laurel_rank": 8,
    "num_kv_shared_layers": 0,
    "activation_sparsity_pattern": [0.0, 0.0, 0.0, 0.0],
    "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
    "sliding_window": 32,
    "tie_word_embeddings": True,
}
_QWEN2 = {
    "model_type": "qwen2",
    "vocab_size": _VOCAB,
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "tie_word_embeddings": False,
}

SAMPLES: tuple[SampleSpec, ...] = (
    SampleSpec(
        "smollm2-135m-fp32", "llama", "The demo model (SmolLM2-135M-Instruct), fp32", "demo"
    ),
    SampleSpec(
        "smollm2-135m-int8", "llama", "The demo model, int8 weights (dynamic)", "demo", INT8
    ),
    SampleSpec(
        "gemma3-tiny", "gemma3_text", "Tiny Gemma 3 (5 local : 1 global)", "config", config=_GEMMA3
    ),
    SampleSpec(
        "gemma3n-tiny",
        "gemma3n_text",
        "Tiny Gemma 3n (AltUp, LAuReL, per-layer embeddings, MatFormer widths)",
        "config",
        config=_GEMMA3N,
    ),
    SampleSpec("qwen2-tiny", "qwen2", "Tiny Qwen2, 3 layers", "config", config=_QWEN2),
    SampleSpec(
        "qwen2-tiny-4layers",
        "qwen2",
        "Tiny Qwen2 with one layer more",
        "config",
        config={**_QWEN2, "num_hidden_layers": 4},
    ),
)


def sample_spec(name: str) -> SampleSpec:
    for spec in SAMPLES:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in SAMPLES)
    raise KeyError(f"no converter sample '{name}'; known: {known}")
