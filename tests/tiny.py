"""Tiny random-config models of every supported family (built in milliseconds) and a tokenizer."""

from __future__ import annotations

import string
from functools import cache

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from engine.models import LoadedModel, wrap_model

FAMILIES = ("gpt2", "llama", "qwen2", "gemma3", "gemma3n", "bert")
_CHARS = string.ascii_letters + string.digits + string.punctuation + " \n"
SPECIALS = ["<pad>", "<eos>", "<unk>"]


@cache
def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(_CHARS))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_config(family: str):
    from transformers import (
        BertConfig,
        Gemma3nTextConfig,
        Gemma3TextConfig,
        GPT2Config,
        LlamaConfig,
        Qwen2Config,
    )

    vocab = len(char_tokenizer())
    common = {"vocab_size": vocab, "pad_token_id": 0, "eos_token_id": 1}
    if family == "gpt2":
        return GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, **common)
    if family == "bert":
        return BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=64,
            **common,
        )
    sizes = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 48,
        "max_position_embeddings": 64,
        "head_dim": 16,
    }
    if family == "llama":
        return LlamaConfig(**sizes, **common)
    if family == "qwen2":
        return Qwen2Config(**sizes, **common)
    if family == "gemma3":
        return Gemma3TextConfig(**sizes, sliding_window=16, **common)
    if family == "gemma3n":
        return Gemma3nTextConfig(
            **{**sizes, "intermediate_size": [48, 40]},
            hidden_size_per_layer_input=8,
            vocab_size_per_layer_input=vocab,
            laurel_rank=4,
            altup_num_inputs=2,
            num_kv_shared_layers=0,
            activation_sparsity_pattern=[0.0, 0.0],
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"],
            **common,
        )
    raise ValueError(family)


def tiny_model(family: str, seed: int = 0) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    torch.manual_seed(seed)
    config = tiny_config(family)
    cls = AutoModelForMaskedLM if family == "bert" else AutoModelForCausalLM
    model = cls.from_config(config).eval().requires_grad_(False)
    return wrap_model(model, char_tokenizer(), source=f"tiny-{family}")


def save_tiny_folder(folder, family: str = "llama", seed: int = 0) -> LoadedModel:
    """A tiny model and the char tokenizer saved as a model folder; returns the model."""
    loaded = tiny_model(family, seed)
    loaded.model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return loaded
