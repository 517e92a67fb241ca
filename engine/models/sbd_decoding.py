"""Set Block Decoding with a KV cache, and greedy autoregressive decoding with the same counting.

SBD (arXiv 2509.04185, Alg. 2–3, Fig. 10): each block starts as k mask tokens. A forward pass runs
[tokens not yet cached ; the block]: the new tokens attend causally and write their exact KV, the
block's slots attend to everything and predict the token at their own position. The block's KV
is dropped after every pass (only finished tokens are ever cached). The entropy-bounded rule
(engine/models/sbd_sampler.py) reveals one or more slots per pass until the block is full; the
finished block is fed causally at the start of the next block's first pass.

`ntp_first` (not in the paper, off by default): slot 0 takes the next-token distribution of the
last causal token, computed in that same first pass at no extra cost. With k = 1 this is exactly
greedy autoregressive decoding.

Both decoders count every model forward call, the one that reads the prompt included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engine.errors import SubnetScopeError
from engine.models.generation import encode_prompt
from engine.models.loading import LoadedModel
from engine.models.masks import NeuronMask, apply_mask
from engine.models.sbd_masks import block_attention, mask_token_id
from engine.models.sbd_sampler import check_threshold, choose


@dataclass(frozen=True)
class CountedGeneration:
    prompt: str  # the text the model saw
    text: str  # the new text only (special tokens skipped)
    token_ids: list[int]  # the new tokens, the end-of-sequence token excluded
    pieces: list[str]  # each new token decoded on its own
    passes: list[int]  # 1-based: the forward pass that produced each new token
    forwards: int  # model forward calls, the prompt's included
    seconds: float
    method: str  # "autoregressive" | "sbd"
    block_size: int  # 1 for autoregressive decoding
    threshold: float | None
    stopped_at_eos: bool

    @property
    def tokens_per_forward(self) -> float:
        produced = len(self.token_ids) + int(self.stopped_at_eos)
        return produced / self.forwards if self.forwards else 0.0


def _check(loaded: LoadedModel, prompt: str, max_new_tokens: int) -> None:
    if not loaded.is_causal_lm:
        raise SubnetScopeError(f"{loaded.display_name} is an encoder; it cannot generate text")
    if not prompt.strip():
        raise SubnetScopeError("the prompt is empty")
    if isinstance(max_new_tokens, bool) or int(max_new_tokens) < 1:
        raise SubnetScopeError(f"max_new_tokens must be ≥ 1, not {max_new_tokens}")


def _stop_ids(loaded: LoadedModel) -> set[int]:
    eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = loaded.tokenizer.eos_token_id
    ids = eos if isinstance(eos, list) else [eos]
    return {int(i) for i in ids if i is not None}


def _new_cache(loaded: LoadedModel, *, croppable: bool = False):
    from transformers import DynamicCache

    cache = DynamicCache(config=loaded.model.config)
    if croppable:  # sliding-window layers keep past states until crop(): the block can go
        cache.activate_past_recording()
    return cache


def _result(
    loaded: LoadedModel,
    prompt_ids: list[int],
    tokens: list[int],
    passes: list[int],
    stops: set[int],
    *,
    forwards: int,
    started: float,
    method: str,
    block_size: int,
    threshold: float | None,
) -> CountedGeneration:
    stopped = bool(tokens) and tokens[-1] in stops
    if stopped:
        tokens, passes = tokens[:-1], passes[:-1]
    tokenizer = loaded.tokenizer
    return CountedGeneration(
        prompt=tokenizer.decode(prompt_ids),
        text=tokenizer.decode(tokens, skip_special_tokens=True),
        token_ids=tokens,
        pieces=[tokenizer.decode([t]) for t in tokens],
        passes=passes,
        forwards=forwards,
        seconds=time.perf_counter() - started,
        method=method,
        block_size=block_size,
        threshold=threshold,
        stopped_at_eos=stopped,
    )


def ar_generate(
    loaded: LoadedModel,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    chat: bool | None = False,
    mask: NeuronMask | None = None,
) -> CountedGeneration:
    """Greedy decoding with a KV cache, one token per forward (what `generate` does, counted)."""
    _check(loaded, prompt, max_new_tokens)
    inputs, _ = encode_prompt(loaded, prompt, chat)
    prompt_ids = inputs["input_ids"][0].tolist()
    stops = _stop_ids(loaded)
    device = inputs["input_ids"].device
    started = time.perf_counter()
    tokens: list[int] = []
    cache = _new_cache(loaded)
    feed = inputs["input_ids"]
    with torch.inference_mode(), apply_mask(loaded, mask):
        while len(tokens) < max_new_tokens:
            logits = loaded.model(input_ids=feed, cache=cache, use_cache=True).logits
            token = int(logits[0, -1].argmax())
            tokens.append(token)
            if token in stops:
                break
            feed = torch.tensor([[token]], device=device)
    return _result(
        loaded,
        prompt_ids,
        tokens,
        list(range(1, len(tokens) + 1)),
        stops,
        forwards=len(tokens),
        started=started,
        method="autoregressive",
        block_size=1,
        threshold=None,
    )


class _Pass:
    """The keep matrix of the pass being run: `pending` causal tokens, then `block` slots."""

    pending = 0
    block = 0
    start = 0  # position id of the first new token

    def keep(self, q_len: int, k_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        if q_len != self.pending + self.block:
            raise SubnetScopeError("set block decoding saw an unexpected query length")
        cached = k_len - q_len
        rows = torch.arange(q_len)[:, None]
        cols = torch.arange(k_len)[None, :]
        keep = (cols <= rows + cached) | (rows >= self.pending)  # block rows see every key
        positions = torch.arange(self.start, self.start + q_len)
        return keep[None, None], positions


def sbd_generate(
    loaded: LoadedModel,
    prompt: str,
    *,
    block_size: int = 16,
    threshold: float = 0.35,
    max_new_tokens: int = 64,
    chat: bool | None = False,
    mask: NeuronMask | None = None,
    ntp_first: bool = False,
) -> CountedGeneration:
    """Set Block Decoding of an SBD-trained model (see the module docstring); greedy tokens."""
    _check(loaded, prompt, max_new_tokens)
    if isinstance(block_size, bool) or int(block_size) < 1:
        raise SubnetScopeError(f"the block size must be ≥ 1, not {block_size}")
    threshold = check_threshold(threshold)
    mask_id = mask_token_id(loaded.tokenizer)
    inputs, _ = encode_prompt(loaded, prompt, chat)
    prompt_ids = inputs["input_ids"][0].tolist()
    device = inputs["input_ids"].device
    stops = _stop_ids(loaded)
    started = time.perf_counter()
    tokens: list[int] = []
    passes: list[int] = []
    pending = list(prompt_ids)  # tokens whose KV is not cached yet
    cached = 0
    forwards = 0
    state = _Pass()
    cache = _new_cache(loaded, croppable=True)
    finished = False
    with torch.inference_mode(), apply_mask(loaded, mask), block_attention(loaded, state.keep):
        while not finished and len(tokens) < max_new_tokens:
            k = min(int(block_size), max_new_tokens - len(tokens))
            block: list[int | None] = [None] * k
            made: list[int] = [0] * k
            first_slot_logits = None
            end = k  # slots at or after the first revealed stop token's successor are dropped
            while any(block[i] is None for i in range(end)):
                feed = pending + [mask_id if t is None else t for t in block]
                state.pending, state.block, state.start = len(pending), k, cached
                logits = loaded.model(
                    input_ids=torch.tensor([feed], device=device),
                    position_ids=torch.arange(cached, cached + len(feed), device=device)[None],
                    cache=cache,
                    use_cache=True,
                ).logits[0]
                forwards += 1
                cache.crop(-k)  # the block's KV is never cached
                if ntp_first and pending:
                    first_slot_logits = logits[len(pending) - 1]
                cached += len(pending)
                pending = []
                slot_logits = logits[-k:].clone()
                if first_slot_logits is not None:
                    slot_logits[0] = first_slot_logits
                slot_logits[:, mask_id] = float("-inf")  # a slot never "reveals" the mask itself
                masked = [i for i in range(end) if block[i] is None]
                for reveal in choose(slot_logits[masked], masked, threshold):
                    block[reveal.slot] = reveal.token
                    made[reveal.slot] = forwards
                    if reveal.token in stops:
                        end = min(end, reveal.slot + 1)
            done = [t for t in block[:end] if t is not None]
            tokens += done
            passes += made[:end]
            pending = done
            finished = end < k or (bool(done) and done[-1] in stops)
    return _result(
        loaded,
        prompt_ids,
        tokens,
        passes,
        stops,
        forwards=forwards,
        started=started,
        method="sbd",
        block_size=int(block_size),
        threshold=threshold,
    )
