"""ICA over MLP neuron activations: functional networks, key-neuron templates, lesion/preserve."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.ica.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "artifacts": ("ComponentArrays", "load_arrays"),
        "build": ("BuildConfig", "build_templates"),
        "capture": ("Activations", "capture_activations"),
        "decompose": ("ICAConfig", "ICAResult", "randomized_pca", "run_ica"),
        "engine.models.layers": ("format_layers", "parse_layers"),
        "masks": ("MASK_MODES", "SpaceMask", "active_neurons", "apply_space_mask", "ica_mask"),
        "templates": (
            "SPACES",
            "Templates",
            "key_features",
            "load_templates",
            "parse_templates",
            "templates_from_mixing",
            "SPACE_LABELS",
        ),
        "catalog": ("list_templates",),
        "explore": (
            "component_neurons",
            "dataset_means",
            "held_out_texts",
            "jaccard_overlaps",
            "key_neuron_counts",
            "live_comparison",
            "time_course",
            "top_tokens",
        ),
    },
)
