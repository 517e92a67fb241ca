"""Model loading, architecture adapters, reversible neuron masks and model summaries."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.models.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "architectures": ("Architecture", "BlockModules", "detect_architecture"),
        "demo": ("DEMO_SOURCE", "ensure_demo_model"),
        "devices": ("accumulation_dtype", "input_device", "module_device"),
        "generation": ("Generation", "generate_text", "next_token_logits", "has_chat_template"),
        "hooks": ("Hook", "active_scopes", "scoped_hooks"),
        "loading": (
            "LoadedModel",
            "choose_device",
            "load_model",
            "plan_load",
            "wrap_model",
            "is_hub_id",
        ),
        "memory": ("GB", "MemoryPlan", "check_fits", "free_bytes"),
        "precision": ("DTYPE_CHOICES", "dtype_choice"),
        "masks": ("NeuronMask", "apply_mask", "load_mask", "parse_mask", "parse_neuron_spec"),
        "summary": ("architecture_facts", "model_summary", "parameters_by_kind"),
        "catalog": ("list_local_models", "model_roots"),
        "layers": ("format_layers", "parse_layers"),
        "sbd_decoding": ("CountedGeneration", "ar_generate", "sbd_generate"),
        "sbd_masks": ("SBD_MASK_TOKEN", "block_attention", "mask_token_id", "training_keep"),
    },
)
