"""Fine-tuning runs (SFT, GRPO, PPO on TRL) that checkpoint and log sparsity against the base."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.training.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "config": (
            "CONFIGS",
            "PRECISIONS",
            "GRPORunConfig",
            "PPORunConfig",
            "RLRunConfig",
            "SFTRunConfig",
            "TrainConfig",
            "FULL_RANK",
            "FullConfig",
            "RANK1_METHODS",
            "RANK1_OPTIMIZERS",
            "Rank1Config",
            "ReLoRAConfig",
            "three_way",
        ),
        "rewards": ("named_reward", "reward_for", "reward_names"),
        "diagnostics": (
            "DIAGNOSTICS_TABLE",
            "MEMORIZATION_TABLE",
            "KINDS",
            "layer_table",
            "read_diagnostics",
        ),
        "masked_runs": ("comparison_long", "masked_runs"),
        "teachers_config": ("TeachersConfig",),
    },
)
