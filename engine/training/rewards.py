"""Rewards for RL runs: named Python functions, sequence classifiers read as a logit difference,
and a module that lets PPO call any of them as a model.

A reward scores (prompt, completion) texts. `brevity` is the GRPO demo's objective: the demo
model visibly learns within a few dozen CPU steps to answer shortly and end on a period.
`non_toxicity` (the PPO demo's) turns the project's toxicity scorer into a classifier-like logit
difference, as seed 000 rewards with logit(positive) − logit(negative) of a sentiment classifier.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import numpy as np
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


class ScorerReward(ABC):
    """A reward that scores many completions at once (`batch`); calling it scores one."""

    @abstractmethod
    def batch(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """One reward per (prompt, completion) pair."""

    def __call__(self, prompt: str, completion: str) -> float:
        return self.batch([prompt], [completion])[0]


class NonToxicity(ScorerReward):
    """log((1 − p) / p) of the project's toxicity scorer's p (engine.attribution.toxicity): the
    logit difference non-toxic − toxic, as seed 000's logit(positive) − logit(negative) is for
    its sentiment classifier. p is clipped to [1e-6, 1 − 1e-6] (so |reward| ≤ 13.8)."""

    def __init__(self, scorer: str = "auto") -> None:
        from engine.attribution.toxicity import get_scorer

        self._scorer = get_scorer(scorer or "auto")  # an unknown scorer fails before training
        self.name = f"non_toxicity ({self._scorer.name})"

    def batch(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        p = np.clip(np.asarray(self._scorer.score([str(c) for c in completions])), 1e-6, 1 - 1e-6)
        return [float(r) for r in np.log1p(-p) - np.log(p)]


def label_index(name: str, config) -> int | None:
    """A class id from an integer string or an id2label name (exact, else case-insensitive)."""
    count = int(config.num_labels)
    if name.strip().isdigit():
        return int(name) if int(name) < count else None
    labels = {str(v): int(k) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if name in labels:
        return labels[name]
    folded = {k.lower(): v for k, v in labels.items()}
    return folded.get(name.lower())


def parse_reward_labels(spec: str, config) -> tuple[int, int | None]:
    """'A-B' → (A, B): the reward is logit[A] − logit[B]; 'A' → (A, None): logit[A]; 'auto' →
    logit[0] for one label, logit[1] − logit[0] for two (seed 000's distilbert-imdb reward)."""
    count = int(config.num_labels)
    spec = str(spec).strip()
    if spec == "auto":
        if count == 1:
            return 0, None
        if count == 2:
            return 1, 0
        raise SubnetScopeError(
            f"the reward model has {count} labels ({_labels(config)}): choose reward_labels, "
            "like '1-0' (logit[1] − logit[0]) or a label name"
        )
    single = label_index(spec, config)
    if single is not None:
        return single, None
    # Label names may contain '-': take the split at which both sides name labels.
    for i, char in enumerate(spec):
        if char == "-":
            a, b = label_index(spec[:i], config), label_index(spec[i + 1 :], config)
            if a is not None and b is not None:
                return a, b
    raise SubnetScopeError(
        f"reward_labels '{spec}' names no label of the reward model ({_labels(config)}); use "
        "'A-B' for logit[A] − logit[B] or 'A' for logit[A], by id or name"
    )


def _labels(config) -> str:
    names = getattr(config, "id2label", None) or {}
    return ", ".join(f"{k}={v}" for k, v in sorted((int(k), v) for k, v in names.items())) or (
        f"{config.num_labels} unnamed"
    )


def sequence_classifier(
    source: str, what: str, *, num_labels: int | None = None, trust_remote_code: bool = False
) -> nn.Module:
    """A float32 sequence-classification model from a folder or hub id; a source that is not
    one is one sentence ("'x' is not {what}: …")."""
    from transformers import AutoModelForSequenceClassification

    extra = {} if num_labels is None else {"num_labels": num_labels}
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source, dtype=torch.float32, trust_remote_code=trust_remote_code, **extra
        )
    except (OSError, ValueError) as exc:
        raise SubnetScopeError(f"'{source}' is not {what}: {str(exc).splitlines()[0]}") from exc


class ClassifierReward(ScorerReward):
    """A sequence-classification model as a reward: logit[A] − logit[B] (or logit[A]) of the
    completion's text, tokenized by the classifier's own tokenizer (seed 000: distilbert-imdb,
    logit(positive) − logit(negative), truncated at 256 tokens)."""

    def __init__(
        self,
        source: str,
        labels: str = "auto",
        *,
        trust_remote_code: bool = False,
        max_length: int = 256,
    ) -> None:
        from transformers import AutoTokenizer

        what = "a named reward or a sequence-classification model"
        self.model = sequence_classifier(source, what, trust_remote_code=trust_remote_code)
        self.model.eval().requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        self.positive, self.negative = parse_reward_labels(labels, self.model.config)
        names = self.model.config.id2label or {}
        read = str(names.get(self.positive, self.positive))
        if self.negative is not None:
            read += f" − {names.get(self.negative, self.negative)}"
        self.name = f"{source}: logit[{read}]"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_length = max_length

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(
            [str(t) for t in texts],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
        )
        with torch.inference_mode():
            return self.model(**enc).logits.float()  # (batch, num_labels)

    def batch(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        if not completions:
            return []
        logits = self.logits(completions)
        reward = logits[:, self.positive]
        if self.negative is not None:
            reward = reward - logits[:, self.negative]
        return reward.tolist()


def score_batch(fn: RewardFn, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    """Scores of many (prompt, completion) pairs, in one call when the reward batches."""
    if isinstance(fn, ScorerReward):
        return [float(r) for r in fn.batch(list(prompts), list(completions))]
    return [float(fn(p, c)) for p, c in zip(prompts, completions, strict=True)]


def reward_for(spec: str, labels: str = "auto", *, trust_remote_code: bool = False) -> RewardFn:
    """A named reward, else a sequence-classification model read as `labels` says."""
    fn = named_reward(spec)
    if fn is not None:
        return fn
    return ClassifierReward(spec, labels, trust_remote_code=trust_remote_code)


NAMED = {"brevity": brevity, "ends_with_period": ends_with_period}
OPTIONAL_ARGUMENT = {"non_toxicity": NonToxicity}  # 'non_toxicity' or 'non_toxicity:SCORER'
WITH_ARGUMENT = {"contains_word": contains_word, "length": lambda n: length(int(n))}


def named_reward(spec: str) -> RewardFn | None:
    """The function for 'brevity', 'contains_word:Paris', 'length:40'; None if not a name."""
    name, _, arg = spec.partition(":")
    if name in NAMED and not arg:
        return NAMED[name]
    if name in OPTIONAL_ARGUMENT:
        return OPTIONAL_ARGUMENT[name](arg)
    if name in WITH_ARGUMENT:
        if not arg:
            raise SubnetScopeError(f"reward '{name}' needs an argument, like '{name}:VALUE'")
        try:
            return WITH_ARGUMENT[name](arg)
        except ValueError:
            raise SubnetScopeError(f"bad argument for reward '{name}': '{arg}'") from None
    return None


def reward_names() -> list[str]:
    return [*NAMED, *OPTIONAL_ARGUMENT, *(f"{n}:ARG" for n in WITH_ARGUMENT)]


def grpo_reward(fn: RewardFn, name: str) -> Callable[..., list[float]]:
    """A TRL GRPO reward function (batched, keyword arguments) over a (prompt, completion) one."""

    def reward(prompts: Sequence, completions: Sequence, **_: object) -> list[float]:
        return score_batch(fn, [_text(p) for p in prompts], [_text(c) for c in completions])

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

    def __init__(
        self, fn: RewardFn, tokenizer, prompt_ids: Sequence[Sequence[int]], scale: float = 1.0
    ) -> None:
        super().__init__()
        self.fn, self.tokenizer, self.scale = fn, tokenizer, float(scale)
        # Decoded exactly as rows will be, so chat-template prompts match too.
        decoded = {tokenizer.decode(ids, skip_special_tokens=True) for ids in prompt_ids}
        self.prompts = sorted(decoded, key=len, reverse=True)
        self.score = nn.Identity()
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # gives it a device

    def backbone(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object):
        prompts, completions = [], []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            text = self.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            prompt = next((p for p in self.prompts if text.startswith(p)), "")
            prompts.append(prompt)
            completions.append(text[len(prompt) :])
        rewards = score_batch(self.fn, prompts, completions)
        scores = self.scale * torch.tensor(rewards, dtype=torch.float32, device=input_ids.device)
        hidden = scores[:, None, None].expand(-1, input_ids.shape[1], 1)  # (batch, seq, 1)
        return SimpleNamespace(hidden_states=(hidden,))
