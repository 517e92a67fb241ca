"""Architecture adapters: where each model family keeps its blocks, MLP projections and norms.

The neuron axis of a block is the input of its MLP down projection (seed 001's hook placement):
GPT-2 `mlp.c_proj`, Llama-style `mlp.down_proj`, BERT-style `output.dense`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from engine.errors import SubnetScopeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FamilySpec:
    """Module names of one family, relative to a block (`None`: the family has no such module)."""

    name: str
    block_lists: tuple[str, ...]  # candidate paths of the ModuleList of blocks, first match wins
    up: str
    down: str
    gate: str | None = None
    attention: tuple[str, ...] = ()
    norms: tuple[str, ...] = ()
    # GPT-2's Conv1D stores weights as (in, out); everyone else uses nn.Linear's (out, in).
    transposed_weights: bool = False


_LLAMA_LIKE_ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
_DECODER_LISTS = ("model.layers", "model.language_model.layers", "language_model.model.layers")

FAMILIES: dict[str, FamilySpec] = {
    "gpt2": FamilySpec(
        name="GPT-2",
        block_lists=("transformer.h", "h"),
        up="mlp.c_fc",
        down="mlp.c_proj",
        attention=("attn.c_attn", "attn.c_proj"),
        norms=("ln_1", "ln_2"),
        transposed_weights=True,
    ),
    "llama": FamilySpec(
        name="Llama",
        block_lists=_DECODER_LISTS,
        up="mlp.up_proj",
        gate="mlp.gate_proj",
        down="mlp.down_proj",
        attention=_LLAMA_LIKE_ATTN,
        norms=("input_layernorm", "post_attention_layernorm"),
    ),
    "qwen2": FamilySpec(
        name="Qwen2",
        block_lists=_DECODER_LISTS,
        up="mlp.up_proj",
        gate="mlp.gate_proj",
        down="mlp.down_proj",
        attention=_LLAMA_LIKE_ATTN,
        norms=("input_layernorm", "post_attention_layernorm"),
    ),
    "gemma3": FamilySpec(
        name="Gemma-3",
        block_lists=_DECODER_LISTS,
        up="mlp.up_proj",
        gate="mlp.gate_proj",
        down="mlp.down_proj",
        attention=_LLAMA_LIKE_ATTN,
        norms=(
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ),
    ),
    "gemma3n": FamilySpec(
        name="Gemma-3n",
        block_lists=_DECODER_LISTS,
        up="mlp.up_proj",
        gate="mlp.gate_proj",
        down="mlp.down_proj",
        attention=_LLAMA_LIKE_ATTN,
        norms=(
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ),
    ),
    "bert": FamilySpec(
        name="BERT",
        block_lists=("bert.encoder.layer", "encoder.layer", "roberta.encoder.layer"),
        up="intermediate.dense",
        down="output.dense",
        attention=(
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ),
        norms=("attention.output.LayerNorm", "output.LayerNorm"),
    ),
}

# config.model_type → family key
MODEL_TYPES: dict[str, str] = {
    "gpt2": "gpt2",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen2",
    "gemma3": "gemma3",
    "gemma3_text": "gemma3",
    "gemma3n": "gemma3n",
    "gemma3n_text": "gemma3n",
    "bert": "bert",
    "roberta": "bert",
}


@dataclass(frozen=True)
class BlockModules:
    """The modules of one block, by fully qualified name in the model."""

    index: int
    path: str
    up: str | None
    gate: str | None
    down: str
    attention: tuple[str, ...] = ()
    norms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Architecture:
    """A model's blocks and MLP layout, as found by its family adapter (or the fallback rule)."""

    family: str
    model_type: str
    blocks: tuple[BlockModules, ...]
    hidden_size: int
    neurons_per_layer: tuple[int, ...]  # the width of each down projection's input
    transposed_weights: bool = False
    fallback: bool = False
    notes: list[str] = field(default_factory=list, compare=False)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def down_module(self, model: nn.Module, layer: int) -> nn.Module:
        return model.get_submodule(self.blocks[layer].down)


def _in_out_features(module: nn.Module) -> tuple[int, int] | None:
    base_layer = getattr(module, "base_layer", None)
    if isinstance(base_layer, nn.Module):  # a PEFT LoRA layer wraps the original projection
        module = base_layer
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    # transformers' GPT-2 Conv1D: weight (in, out), attribute nf = out.
    if type(module).__name__ == "Conv1D" and isinstance(weight, torch.Tensor):
        return weight.shape[0], weight.shape[1]
    return None


def _hidden_size(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attr in ("hidden_size", "n_embd", "d_model"):
        value = getattr(text, attr, None)
        if isinstance(value, int):
            return value
    return None


def _model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", type(model).__name__))


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _from_family(model: nn.Module, family: FamilySpec, model_type: str) -> Architecture | None:
    for list_path in family.block_lists:
        if not _has(model, list_path):
            continue
        block_list = model.get_submodule(list_path)
        if not isinstance(block_list, nn.ModuleList):
            continue
        blocks, widths = [], []
        for i in range(len(block_list)):
            prefix = f"{list_path}.{i}"
            down = f"{prefix}.{family.down}"
            features = _in_out_features(model.get_submodule(down)) if _has(model, down) else None
            if features is None:
                return None
            blocks.append(
                BlockModules(
                    index=i,
                    path=prefix,
                    up=f"{prefix}.{family.up}",
                    gate=f"{prefix}.{family.gate}" if family.gate else None,
                    down=down,
                    attention=tuple(
                        f"{prefix}.{a}" for a in family.attention if _has(model, f"{prefix}.{a}")
                    ),
                    norms=tuple(
                        f"{prefix}.{n}" for n in family.norms if _has(model, f"{prefix}.{n}")
                    ),
                )
            )
            widths.append(features[0])
        hidden = _hidden_size(model) or _in_out_features(model.get_submodule(blocks[0].down))[1]
        return Architecture(
            family=family.name,
            model_type=model_type,
            blocks=tuple(blocks),
            hidden_size=hidden,
            neurons_per_layer=tuple(widths),
            transposed_weights=family.transposed_weights,
        )
    return None


def _fallback(model: nn.Module, model_type: str) -> Architecture:
    """Seed 001's rule: a Linear with out_features == hidden < in_features is a down projection."""
    hidden = _hidden_size(model)
    if hidden is None:
        raise SubnetScopeError(
            f"cannot find the MLP layers of this '{model_type}' model: "
            "its config has no hidden size"
        )
    blocks, widths = [], []
    for name, module in model.named_modules():
        features = _in_out_features(module)
        if features is None or not isinstance(module, nn.Linear):
            continue
        in_features, out_features = features
        if out_features == hidden and in_features > hidden:
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            blocks.append(
                BlockModules(index=len(blocks), path=parent, up=None, gate=None, down=name)
            )
            widths.append(in_features)
    if not blocks:
        raise SubnetScopeError(
            f"cannot find the MLP layers of this '{model_type}' model: no Linear maps a wider "
            f"input back to the hidden size {hidden}; supported model types: "
            + ", ".join(sorted(MODEL_TYPES))
        )
    message = (
        f"unknown architecture '{model_type}': found {len(blocks)} MLP down projections by the "
        "fallback rule (Linear with out_features == hidden < in_features); up/gate not identified"
    )
    warnings.warn(message, stacklevel=3)
    return Architecture(
        family="fallback",
        model_type=model_type,
        blocks=tuple(blocks),
        hidden_size=hidden,
        neurons_per_layer=tuple(widths),
        fallback=True,
        notes=[message],
    )


def detect_architecture(model: nn.Module) -> Architecture:
    """The model's blocks and MLP modules, from its family adapter or else the fallback rule."""
    model_type = _model_type(model)
    family_key = MODEL_TYPES.get(model_type)
    if family_key is not None:
        found = _from_family(model, FAMILIES[family_key], model_type)
        if found is not None:
            return found
        log.warning("model_type %s did not match its family layout; using the fallback", model_type)
    return _fallback(model, model_type)
