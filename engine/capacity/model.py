"""The capacity meter's models: GPT-2 built from a (layers, width) size, and its parameter count.

Morris et al., arXiv 2505.24832 §3.2: GPT-2 from scratch, tied input/output embeddings, parameters
counted with the tied and the position embeddings once (1 layer × d 32 at V = 2048, S = 64:
80.4K).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import GPT2Config, GPT2LMHeadModel

HEAD_WIDTH = 16  # width of one attention head; the paper gives no head count (it changes no count)


def heads_of(width: int) -> int:
    """Attention heads of a model `width` wide: width / 16, at least one, dividing the width."""
    heads = max(1, width // HEAD_WIDTH)
    while width % heads:
        heads -= 1
    return heads


def gpt2_config(layers: int, width: int, vocab: int, positions: int) -> GPT2Config:
    """GPT-2 with `vocab` token ids (the data's V plus the BOS id), `positions` positions, no
    dropout (memorization of a training set: nothing is held out) and tied embeddings."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab,
        n_positions=positions,
        n_embd=width,
        n_layer=layers,
        n_head=heads_of(width),
        n_inner=4 * width,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        bos_token_id=vocab - 1,
        eos_token_id=vocab - 1,
    )


def build_model(layers: int, width: int, vocab: int, positions: int) -> GPT2LMHeadModel:
    """A freshly initialized model (seed torch's generator first), in float32."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel(gpt2_config(layers, width, vocab, positions)).float()


def parameter_count(layers: int, width: int, vocab: int, positions: int) -> int:
    """GPT-2's parameters, tied and position embeddings counted once: per block two layer norms
    (2·2d), attention (3d² + 3d, d² + d) and the MLP (4d² + 4d, 4d² + d); token and position
    embeddings (vocab·d, positions·d) and the final layer norm (2d)."""
    d = width
    block = 12 * d * d + 13 * d
    return layers * block + vocab * d + positions * d + 2 * d


def counted_parameters(model: object) -> int:
    """The parameters a built model holds (torch's `parameters()` yields a tied tensor once)."""
    return sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
