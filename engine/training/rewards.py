"""Rewards for RL runs: named Python functions, and a module that lets PPO call them as a model.

A named reward scores (prompt, completion) texts. `brevity` is the demo's objective: the demo
model visibly learns within a few dozen CPU steps to answer shortly and end on a period.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import torch
from torch import nn

from engine.errors import SubnetScopeError

RewardFn = Callable[[str, str], float]  # (prompt, completion) → reward


def _text(completion) -> str:
    # GRPO hands conversational completions as [{"role": "assistant", "content": ...}].
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def brevity(prompt: str, completion: str, target_words: int = 12) -> float:
    """1 for a finished answer of at most `target_words` words, less for longer ones; +0.5 when it
    ends with a period."""
    text = completion.strip()
    words = len(text.split())
    short = 1.0 if 0 < words <= target_words else max(0.0, 1.0 - (words - target_words) / 24)
    return short * (1.0 if words else 0.0) + (0.5 if text.endswith(".") else 0.0)


def ends_with_period(prompt: str, completion: str) -> float:
    return 1.0 if completion.strip().endswith(".") else 0.0


def contains_word(word: str) -> RewardFn:
    pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
    return lambda prompt, completion: 1.0 if pattern.search(completion) else 0.0


def length(chars: int) -> RewardFn:
    """Closer to `chars` characters is better (1 at exactly that length)."""
    return lambda prompt, completion: max(0.0, 1.0 - abs(len(completion.strip()) - chars) / chars)


NAMED = {"brevity": brevity, "ends_with_period": ends_with_period}
WITH_ARGUMENT = {"contains_word": contains_word, "length": lambda n: length(int(n))}


def named_reward(spec: str) -> RewardFn | None:
    """The function for 'brevity', 'contains_word:Paris', 'length:40'; None if not a name."""
    name, _, arg = spec.partition(":")
    if name in NAMED and not arg:
        return NAMED[name]
    if name in WITH_ARGUMENT:
        if not arg:
            raise SubnetScopeError(f"reward '{name}' needs an argument, like '{name}:VALUE'")
        try:
            return WITH_ARGUMENT[name](arg)
        except ValueError:
            raise SubnetScopeError(f"bad argument for reward '{name}': '{arg}'") from None
    return None


def reward_names() -> list[str]:
    return [*NAMED, *(f"{n}:ARG" for n in WITH_ARGUMENT)]


def grpo_reward(fn: RewardFn, name: str) -> Callable[..., list[float]]:
    """A TRL GRPO reward function (batched, keyword arguments) over a (prompt, completion) one."""

    def reward(prompts: Sequence, completions: Sequence, **_: object) -> list[float]:
        return [float(fn(_text(p), _text(c))) for p, c in zip(prompts, completions, strict=True)]

    reward.__name__ = name.replace(":", "_")
    return reward


class FunctionRewardModel(nn.Module):
    """Looks like a sequence-classification reward model to trl.experimental.ppo's get_reward:
    `getattr(model, model.base_model_prefix)(input_ids=...).hidden_states[-1]` then `.score`.

    The backbone decodes each row, splits off the prompt (the longest known prompt it starts
    with), scores the completion and writes that score at every position; get_reward then reads
    it at the last non-pad token.
    """

    base_model_prefix = "backbone"

    def __init__(self, fn: RewardFn, tokenizer, prompt_ids: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.fn, self.tokenizer = fn, tokenizer
        # Decoded exactly as rows will be, so chat-template prompts match too.
        decoded = {tokenizer.decode(ids, skip_special_tokens=True) for ids in prompt_ids}
        self.prompts = sorted(decoded, key=len, reverse=True)
        self.score = nn.Identity()
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # gives it a device

    def backbone(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object):
        rewards = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            text = self.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            prompt = next((p for p in self.prompts if text.startswith(p)), "")
            rewards.append(float(self.fn(prompt, text[len(prompt) :])))
        scores = torch.tensor(rewards, dtype=torch.float32, device=input_ids.device)
        hidden = scores[:, None, None].expand(-1, input_ids.shape[1], 1)  # (batch, seq, 1)
        return SimpleNamespace(hidden_states=(hidden,))
