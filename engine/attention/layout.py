"""Which layers attend locally (sliding window) or globally, their RoPE bases and head layout,
read from a model's config (Gemma 3, Gemma 3n, Llama, Qwen2, Mistral, GPT-2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

LOCAL_TYPES = ("sliding_attention", "chunked_attention")


@dataclass(frozen=True)
class LayerAttention:
    layer: int
    kind: str  # "local" (sliding window) | "global"
    window: int | None  # tokens a local layer sees, the query included (kv > q - window)
    rope_theta: float | None  # None where positions are learned (GPT-2)
    heads: int
    kv_heads: int
    head_dim: int


def _text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def _layer_types(config: Any, layers: int) -> list[str]:
    types = getattr(config, "layer_types", None)
    if types:
        return list(types)
    # Mistral-style configs: one sliding window for every layer, no layer_types.
    sliding = getattr(config, "sliding_window", None)
    if sliding and getattr(config, "use_sliding_window", True):
        return ["sliding_attention"] * layers
    return ["full_attention"] * layers


def _rope_theta(config: Any, layer_type: str) -> float | None:
    if getattr(config, "model_type", "") == "gpt2":
        return None
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict):
        per_type = params.get(layer_type)
        if isinstance(per_type, dict):
            return float(per_type["rope_theta"])
        if "rope_theta" in params:
            return float(params["rope_theta"])
    theta = getattr(config, "rope_theta", None)
    if layer_type in LOCAL_TYPES and getattr(config, "rope_local_base_freq", None):
        theta = config.rope_local_base_freq
    return float(theta) if theta is not None else None


def attention_layout(config: Any) -> list[LayerAttention]:
    """One entry per decoder layer; `config` is a transformers config (`model.config`)."""
    config = _text_config(config)
    layers = int(getattr(config, "num_hidden_layers", None) or config.n_layer)
    heads = int(getattr(config, "num_attention_heads", None) or config.n_head)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    hidden = int(getattr(config, "hidden_size", None) or config.n_embd)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    window = getattr(config, "sliding_window", None)
    out = []
    for layer, layer_type in enumerate(_layer_types(config, layers)):
        local = layer_type in LOCAL_TYPES
        out.append(
            LayerAttention(
                layer=layer,
                kind="local" if local else "global",
                window=int(window) if local and window else None,
                rope_theta=_rope_theta(config, layer_type),
                heads=heads,
                kv_heads=kv_heads,
                head_dim=head_dim,
            )
        )
    return out


def layout_table(config: Any) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame([asdict(entry) for entry in attention_layout(config)])
    return frame.astype({"window": "Int64"})  # a window count, blank on global layers


def global_layers(config: Any) -> list[int]:
    return [entry.layer for entry in attention_layout(config) if entry.kind == "global"]
