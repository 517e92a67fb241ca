"""Fine-tuning runs (SFT, GRPO, PPO on TRL) that checkpoint and log sparsity against the base."""

from engine.training.config import (
    CONFIGS,
    PRECISIONS,
    GRPORunConfig,
    PPORunConfig,
    RLRunConfig,
    SFTRunConfig,
    TrainConfig,
)
from engine.training.rewards import named_reward, reward_for, reward_names

__all__ = [
    "CONFIGS",
    "PRECISIONS",
    "GRPORunConfig",
    "PPORunConfig",
    "RLRunConfig",
    "SFTRunConfig",
    "TrainConfig",
    "named_reward",
    "reward_for",
    "reward_names",
]
