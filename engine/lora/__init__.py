"""LoRA adapters: sets of PEFT folders, blends (every PEFT type, exact low-rank svd/cat) with their
error, per-call application, geometry from the factors, and delta activations over probe texts."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.lora.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "adapters": (
            "AdapterInfo",
            "AdapterSet",
            "LoraAdapter",
            "load_adapter",
            "load_adapter_set",
            "module_layer",
        ),
        "blend": ("BlendResult", "BlendSpec", "blend", "save_blend"),
        "methods": ("METHODS", "DENSITY_METHODS", "SVD_METHODS"),
        "deltas": (
            "DeltaTable",
            "delta_activations",
            "delta_distances",
            "delta_map",
            "mean_last_state",
        ),
        "geometry": ("cosine_matrix", "cosine_table", "geometry_table", "inspect_adapters"),
        "live": ("apply_lora",),
        "lowrank": (
            "Blend",
            "Factors",
            "LowRankSVD",
            "cat_blend",
            "cosine",
            "difference_norm",
            "effective_rank",
            "frobenius",
            "lora_scale",
            "lowrank_svd",
            "singular_values",
            "stable_rank",
            "stacked",
            "svd_blend",
        ),
        "probes": ("PROBE_SETS", "probe_texts"),
        "catalog": ("list_adapters", "saved_dir"),
        "compare": ("side_by_side",),
        "neuron_norms": ("factor_neuron_norms",),
        "tables": ("norms_by_layer", "ranks_by_kind"),
        "delta_cache": ("DeltaCache",),
        # The LoRA generator (engine/lora/generator/), as the blender's Generate view uses it.
        "generator.catalog": ("GENERATOR_META", "list_generators"),
        "generator.generate": (
            "GeneratedAdapter",
            "GeneratorRun",
            "encoder_for",
            "generate_adapter",
            "open_generator",
            "save_generated",
        ),
        "generator.jobs": ("ABLATION_KIND",),
        "generator.teachers": ("TeacherRun", "open_teachers"),
    },
)
