"""Text generation and logits on a shared model, with an optional per-call neuron mask."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engine.errors import SubnetScopeError
from engine.models.devices import input_device
from engine.models.loading import LoadedModel
from engine.models.masks import NeuronMask, apply_mask


@dataclass(frozen=True)
class Generation:
    prompt: str  # the text the model saw (after the chat template, when one was used)
    text: str  # the newly generated text only
    new_tokens: int
    seconds: float
    used_chat_template: bool


class SeededSampler:
    """A logits processor that samples the next token at `temperature` with a torch.Generator of
    its own (seeded once, per call) and leaves only that token's score finite."""

    def __init__(self, temperature: float, seed: int) -> None:
        self.temperature = temperature
        self.seed = seed
        self.generator: torch.Generator | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.generator is None:  # on the device the scores live on
            self.generator = torch.Generator(device=scores.device).manual_seed(self.seed)
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)  # (batch, vocab)
        picked = torch.multinomial(probs, 1, generator=self.generator)  # (batch, 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, picked, 0.0)


def has_chat_template(tokenizer: object) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def encode_prompt(loaded: LoadedModel, prompt: str, chat: bool | None = None) -> tuple[dict, bool]:
    """Token ids for a prompt, through the chat template when asked (default: when there is one)."""
    tokenizer = loaded.tokenizer
    use_chat = has_chat_template(tokenizer) if chat is None else chat
    if use_chat and not has_chat_template(tokenizer):
        raise SubnetScopeError("this tokenizer has no chat template; generate from plain text")
    if use_chat:
        messages = [{"role": "user", "content": prompt}]
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
    else:
        encoded = tokenizer(prompt, return_tensors="pt")
    device = input_device(loaded.model)
    return {k: v.to(device) for k, v in encoded.items()}, use_chat


def generate_text(
    loaded: LoadedModel,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    mask: NeuronMask | None = None,
    chat: bool | None = None,
    temperature: float = 0.0,
    seed: int = 0,
) -> Generation:
    """Greedy (temperature 0) or sampled continuation; the mask holds for this call only."""
    if not loaded.is_causal_lm:
        raise SubnetScopeError(f"{loaded.display_name} is an encoder; it cannot generate text")
    if not prompt.strip():
        raise SubnetScopeError("the prompt is empty")
    inputs, used_chat = encode_prompt(loaded, prompt, chat)
    sampling: dict = {"do_sample": False}
    if temperature > 0:
        from transformers import LogitsProcessorList

        # Greedy decoding over the sampler's one-hot scores: the draw comes from this call's own
        # generator, never from torch's global seed, which every session of the dashboard shares.
        sampling["logits_processor"] = LogitsProcessorList([SeededSampler(temperature, seed)])
    tokenizer = loaded.tokenizer
    started = time.perf_counter()
    with torch.inference_mode(), apply_mask(loaded, mask):
        output = loaded.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
    seconds = time.perf_counter() - started
    new_ids = output[0, inputs["input_ids"].shape[1] :]
    return Generation(
        prompt=tokenizer.decode(inputs["input_ids"][0]),
        text=tokenizer.decode(new_ids, skip_special_tokens=True),
        new_tokens=int(new_ids.shape[0]),
        seconds=seconds,
        used_chat_template=used_chat,
    )


def generate_texts(
    loaded: LoadedModel,
    prompts: list[str],
    *,
    max_new_tokens: int = 32,
    mask: NeuronMask | None = None,
) -> list[str]:
    """Greedy plain-text continuations of several prompts in one batched call.

    Prompts are padded on the left by hand (the shared tokenizer's padding side is never set),
    so each continuation starts right after its own prompt.
    """
    if not loaded.is_causal_lm:
        raise SubnetScopeError(f"{loaded.display_name} is an encoder; it cannot generate text")
    if not prompts or not all(p.strip() for p in prompts):
        raise SubnetScopeError("every prompt needs some text")
    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(len(ids) for ids in encoded)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded])  # (b, seq)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])
    device = input_device(loaded.model)
    with torch.inference_mode(), apply_mask(loaded, mask):
        output = loaded.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )  # (b, seq + new)
    return [tokenizer.decode(row[width:], skip_special_tokens=True) for row in output]


def next_token_logits(
    loaded: LoadedModel, text: str, *, mask: NeuronMask | None = None
) -> torch.Tensor:
    """Logits (vocab,) for the token after `text` (no chat template)."""
    inputs = loaded.tokenizer(text, return_tensors="pt").to(input_device(loaded.model))
    with torch.inference_mode(), apply_mask(loaded, mask):
        logits = loaded.model(**inputs).logits  # (1, seq, vocab)
    return logits[0, -1].float().cpu()
