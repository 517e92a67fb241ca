"""What each analysis needs at a model's size, by arithmetic from its config: FLOPs, bytes moved
and peak memory, for docs/scale.md and `models costs`.

These are estimates of the dominant terms, stated so they can be checked: P parameters, L layers,
h hidden width, m MLP width, H attention heads, V vocabulary, T tokens per text, n texts, b bytes
per weight (2 in bf16). FLOPs count P whole (the embedding too: an upper bound where the head is
untied); bytes read are per text, or per batch where texts are batched (ICA capture).
- forward: 2·P·T FLOPs; memory = weights + float32 logits (T·V·4).
- LRP (LXT): forward keeping the graph + one backward ≈ 3 forwards of FLOPs; memory = weights +
  saved activations L·T·(10·h + 4·m)·b + eager attention probabilities L·H·T²·b.
- Wanda: one forward per text + a float64 sum per neuron (L·m·8).
- ICA capture: one forward per text; stores n·T·m float32 per captured layer (spilled to disk).
- LoRA SFT (rank 16, every linear): the LRP-like activations for a batch + frozen weights + the
  adapter's fp32 weights, gradients and Adam moments (16 bytes per adapter parameter).
- full SFT (mixed precision AdamW): 16 bytes per parameter (bf16 weights and gradients, fp32
  master weights and two moments) + activations.
- PPO with a LoRA policy: the policy's base serves as the reference (adapters off), plus a reward
  model of the same size and a value head: 2 copies of the weights + LoRA SFT's activations;
  per step ≈ 6 forwards (generation ≈ 1, policy forward + backward 3, reference 1, reward 1).
- sparsity diff of two checkpoints: reads 2·P·b bytes; memory = one chunk (engine/sparsity).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.models.memory import GB

LORA_RANK = 16
TOKENS = 512


@dataclass(frozen=True)
class Shape:
    parameters: int
    layers: int
    hidden: int
    mlp: int
    heads: int
    vocab: int
    linear_in_out: int  # Σ (d_in + d_out) over one block's linear modules (LoRA's per-rank size)

    @classmethod
    def of(cls, config: object, parameters: int) -> Shape:
        text = getattr(config, "text_config", None) or config
        hidden = int(text.hidden_size)
        width = text.intermediate_size
        mlp = int(max(width) if isinstance(width, (list, tuple)) else width)
        heads = int(text.num_attention_heads)
        kv = int(getattr(text, "num_key_value_heads", heads) or heads)
        head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
        q, k = heads * head_dim, kv * head_dim
        attention = (hidden + q) + 2 * (hidden + k) + (q + hidden)
        return cls(
            parameters=parameters,
            layers=int(text.num_hidden_layers),
            hidden=hidden,
            mlp=mlp,
            heads=heads,
            vocab=int(text.vocab_size),
            linear_in_out=attention + 3 * (hidden + mlp),
        )


@dataclass(frozen=True)
class Cost:
    analysis: str
    flops: float  # per text of TOKENS tokens (per step for training)
    bytes_read: float  # weights and inputs read once per text / step
    memory_bytes: float  # peak, on the device that holds the model
    note: str

    def to_json(self) -> dict:
        return asdict(self)


def _activations(s: Shape, tokens: int, b: int) -> float:
    return s.layers * tokens * (10 * s.hidden + 4 * s.mlp) * b + s.layers * s.heads * tokens**2 * b


def analysis_costs(s: Shape, *, tokens: int = TOKENS, texts: int = 100, b: int = 2) -> list[Cost]:
    """The dominant costs of each analysis (module docstring) for a model of shape `s`."""
    weights = s.parameters * b
    forward = 2.0 * s.parameters * tokens
    logits = tokens * s.vocab * 4
    activations = _activations(s, tokens, b)
    adapter = LORA_RANK * s.linear_in_out * s.layers
    lora_train = weights + activations + 16 * adapter + logits
    return [
        Cost("forward (inference, masks)", forward, weights, weights + logits, "one text"),
        Cost(
            "LRP (LXT)",
            3 * forward,
            weights,
            weights + activations + logits,
            "one text: forward with graph + one backward",
        ),
        Cost("Wanda", forward, weights, weights + logits + s.layers * s.mlp * 8, "one text"),
        Cost(
            "ICA capture",
            forward * texts,
            weights,
            weights + logits,
            f"{texts} texts; {texts * tokens * s.mlp * 4 / GB:.2f} GB of float32 rows per "
            "captured layer, spilled to disk",
        ),
        Cost("LoRA SFT step", 3 * forward, weights, lora_train, f"rank {LORA_RANK}, batch 1"),
        Cost(
            "full SFT step",
            3 * forward,
            weights,
            16 * s.parameters + activations + logits,
            "mixed-precision AdamW, batch 1",
        ),
        Cost("PPO step (LoRA policy)", 6 * forward, 2 * weights, lora_train + weights, "batch 1"),
        Cost("sparsity diff", 0.0, 2 * weights, 64 * 2**20, "two checkpoints, streamed"),
    ]
