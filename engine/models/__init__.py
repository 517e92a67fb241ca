"""Model loading, architecture adapters, reversible neuron masks and model summaries."""

from engine.models.architectures import Architecture, BlockModules, detect_architecture
from engine.models.demo import DEMO_SOURCE, ensure_demo_model
from engine.models.generation import Generation, generate_text, next_token_logits
from engine.models.loading import LoadedModel, choose_device, load_model, wrap_model
from engine.models.masks import (
    NeuronMask,
    apply_mask,
    load_mask,
    parse_mask,
    parse_neuron_spec,
)
from engine.models.summary import architecture_facts, model_summary, parameters_by_kind

__all__ = [
    "DEMO_SOURCE",
    "Architecture",
    "BlockModules",
    "Generation",
    "LoadedModel",
    "NeuronMask",
    "apply_mask",
    "architecture_facts",
    "choose_device",
    "detect_architecture",
    "ensure_demo_model",
    "generate_text",
    "load_mask",
    "load_model",
    "model_summary",
    "next_token_logits",
    "parameters_by_kind",
    "parse_mask",
    "parse_neuron_spec",
    "wrap_model",
]
