"""The LoRA generator (seed 004, DnD + LLGBM): encoders, hyper-networks, losses, FunctionalLoRA."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.lora.generator.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "arch": ("ARCHS", "GeneratorConfig", "TargetSpec"),
        "encoder": (
            "ENCODERS",
            "BaseModelEncoder",
            "SentenceEncoder",
            "TextEncoder",
            "minilm_folder",
            "open_encoder",
        ),
        "hypernet": ("LoRAGenerator", "build_generator", "load_generator", "save_generator"),
        "losses": (
            "LOSS_MODES",
            "LossWeights",
            "combined_loss",
            "delta_loss",
            "delta_w_loss",
            "weight_loss",
        ),
        "functional": (
            "ProbeBatch",
            "delta_differentiable",
            "functional_lora",
            "last_state",
            "probe_batch",
        ),
    },
)
