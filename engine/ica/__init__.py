"""ICA over MLP neuron activations: functional networks, key-neuron templates, lesion/preserve."""

from engine.ica.artifacts import ComponentArrays, load_arrays
from engine.ica.build import BuildConfig, build_templates
from engine.ica.capture import Activations, capture_activations
from engine.ica.decompose import ICAConfig, ICAResult, randomized_pca, run_ica
from engine.ica.layers import format_layers, parse_layers
from engine.ica.masks import MASK_MODES, SpaceMask, active_neurons, apply_space_mask, ica_mask
from engine.ica.templates import (
    SPACES,
    Templates,
    key_features,
    load_templates,
    parse_templates,
    templates_from_mixing,
)

__all__ = [
    "MASK_MODES",
    "SPACES",
    "Activations",
    "BuildConfig",
    "ComponentArrays",
    "ICAConfig",
    "ICAResult",
    "SpaceMask",
    "Templates",
    "active_neurons",
    "apply_space_mask",
    "build_templates",
    "capture_activations",
    "format_layers",
    "ica_mask",
    "key_features",
    "load_arrays",
    "load_templates",
    "parse_layers",
    "parse_templates",
    "randomized_pca",
    "run_ica",
    "templates_from_mixing",
]
