"""Set Block Decoding and counted autoregressive decoding on tiny models: k = 1 is greedy decoding,
the KV-cached decoder equals a no-cache reference, stop tokens, counting and per-call scope."""

from __future__ import annotations

import itertools
import math
import threading

import pytest
import torch
from torch import nn

from engine.errors import SubnetScopeError
from engine.models import (
    SBD_MASK_TOKEN,
    NeuronMask,
    apply_mask,
    ar_generate,
    block_attention,
    mask_token_id,
    sbd_generate,
    wrap_model,
)
from engine.models.attention_calls import _HOOKS
from engine.models.sbd_sampler import choose
from tests.tiny import char_tokenizer, tiny_model

DECODERS = ("llama", "gpt2", "qwen2", "gemma3", "gemma3n")
PROMPT = "abc def ghij"  # 12 tokens; with 24 new ones gemma's window of 16 is passed
NEW = 24
SHARP = 50.0  # the tiny models' logits are near uniform; scaled, entropies spread over 0–2 nats


def sbd_tiny(family: str, implementation: str = "sdpa", sharpen: float = SHARP):
    """A tiny model with the SBD mask token (untrained: only the decoding mechanics are tested)."""
    loaded = tiny_model(family)
    tokenizer = char_tokenizer.__wrapped__()  # a fresh one: the cached tokenizer is shared
    tokenizer.add_special_tokens({"additional_special_tokens": [SBD_MASK_TOKEN]})
    model = loaded.model
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    head = model.get_output_embeddings()
    weight = head.weight.detach() * sharpen
    weight[mask_token_id(tokenizer)] = 0.0  # as after training: the mask is rarely predicted
    head.weight = nn.Parameter(weight, requires_grad=False)
    model.set_attn_implementation(implementation)
    return wrap_model(model, tokenizer, source=f"tiny-{family}-sbd")


def stops_of(loaded) -> set[int]:
    eos = loaded.model.generation_config.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}


def reference_sbd(
    loaded,
    prompt: str,
    *,
    block_size: int,
    threshold: float,
    max_new_tokens: int = NEW,
    ntp_first: bool = False,
) -> tuple[list[int], list[int], int]:
    """SBD without a KV cache: every pass runs the whole [prompt + finished ; block], causal, then
    the block seeing everything. → (tokens incl. a final stop token, passes, forwards)."""
    prompt_ids = loaded.tokenizer(prompt)["input_ids"]
    mask_id = mask_token_id(loaded.tokenizer)
    stops = stops_of(loaded)
    tokens: list[int] = []
    passes: list[int] = []
    forwards = 0
    while len(tokens) < max_new_tokens and not (tokens and tokens[-1] in stops):
        k = min(block_size, max_new_tokens - len(tokens))
        context = prompt_ids + tokens
        n = len(context)
        rows, cols = torch.arange(n + k)[:, None], torch.arange(n + k)[None, :]
        keep = ((cols <= rows) | (rows >= n))[None, None]
        positions = torch.arange(n + k)
        block: list[int | None] = [None] * k
        made = [0] * k
        end = k  # slots after a revealed stop token are dropped
        next_token_logits = None
        while any(t is None for t in block[:end]):
            feed = context + [mask_id if t is None else t for t in block]
            attend = lambda q, kl, keep=keep, positions=positions: (keep, positions)  # noqa: E731
            with torch.no_grad(), block_attention(loaded, attend):
                logits = loaded.model(
                    input_ids=torch.tensor([feed]), position_ids=positions[None], use_cache=False
                ).logits[0]
            forwards += 1
            if next_token_logits is None:
                next_token_logits = logits[n - 1]
            slot_logits = logits[n:].clone()
            if ntp_first:
                slot_logits[0] = next_token_logits
            slot_logits[:, mask_id] = float("-inf")  # the mask token is never an output
            masked = [i for i in range(end) if block[i] is None]
            for reveal in choose(slot_logits[masked], masked, threshold):
                block[reveal.slot] = reveal.token
                made[reveal.slot] = forwards
                if reveal.token in stops:
                    end = min(end, reveal.slot + 1)
        tokens += block[:end]
        passes += made[:end]
    return tokens, passes, forwards


def assert_same(loaded, result, reference: tuple[list[int], list[int], int]) -> None:
    """The cached decoder's result has the reference's tokens, passes and forwards."""
    tokens, passes, forwards = reference
    stopped = bool(tokens) and tokens[-1] in stops_of(loaded)
    assert result.stopped_at_eos == stopped
    if stopped:
        tokens, passes = tokens[:-1], passes[:-1]
    assert (result.token_ids, result.passes, result.forwards) == (tokens, passes, forwards)


def plant_stop(loaded, token: int) -> None:
    """Make `token` the model's end of sequence (a token the untrained model does produce)."""
    loaded.model.generation_config.eos_token_id = [token]


# Block size 1 with the next-token slot is greedy decoding -----------------------------------


@pytest.mark.parametrize("family", DECODERS)
def test_block_size_one_with_ntp_first_is_greedy_decoding(family):
    loaded = sbd_tiny(family)
    ar = ar_generate(loaded, PROMPT, max_new_tokens=NEW)
    inputs = loaded.tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        hf = loaded.model.generate(**inputs, max_new_tokens=NEW, do_sample=False, pad_token_id=0)
    assert hf[0, inputs["input_ids"].shape[1] :].tolist() == ar.token_ids  # no stop produced
    assert (ar.forwards, ar.passes) == (NEW, list(range(1, NEW + 1)))
    for threshold in (0.0, 0.35, math.inf):  # one slot: the threshold does not matter
        sbd = sbd_generate(
            loaded, PROMPT, block_size=1, threshold=threshold, max_new_tokens=NEW, ntp_first=True
        )
        assert sbd.token_ids == ar.token_ids
        assert (sbd.forwards, sbd.passes, sbd.text) == (ar.forwards, ar.passes, ar.text)

    # with a stop token the model produces, all three stop at it
    plant_stop(loaded, ar.token_ids[9])
    first = ar.token_ids.index(ar.token_ids[9])
    ar_stop = ar_generate(loaded, PROMPT, max_new_tokens=NEW)
    sbd_stop = sbd_generate(loaded, PROMPT, block_size=1, max_new_tokens=NEW, ntp_first=True)
    with torch.no_grad():
        hf = loaded.model.generate(**inputs, max_new_tokens=NEW, do_sample=False, pad_token_id=0)
    assert hf[0, inputs["input_ids"].shape[1] :].tolist() == ar.token_ids[: first + 1]
    for result in (ar_stop, sbd_stop):
        assert result.token_ids == ar.token_ids[:first]
        assert result.stopped_at_eos
        assert result.forwards == first + 1


# The KV cache changes nothing -----------------------------------------------------------------


@pytest.mark.parametrize("block_size", [1, 3, 4])
@pytest.mark.parametrize("family", DECODERS)
def test_kv_cached_decoding_equals_the_no_cache_reference(family, block_size):
    loaded = sbd_tiny(family)
    counts = set()
    for threshold in (0.0, 0.5, 1.5, 1e9):
        for ntp_first in (False, True):
            options = {"block_size": block_size, "threshold": threshold, "ntp_first": ntp_first}
            result = sbd_generate(loaded, PROMPT, max_new_tokens=NEW, **options)
            assert_same(loaded, result, reference_sbd(loaded, PROMPT, **options))
            counts.add(result.forwards)
    if block_size > 1:
        assert len(counts) > 1  # the thresholds did reveal different numbers of slots per pass


@pytest.mark.parametrize("family", ["gemma3", "gemma3n"])
def test_passes_wider_than_the_sliding_window(family):
    """A 44-token prompt and blocks up to 16 slots: one pass holds more than the window of 16."""
    loaded = sbd_tiny(family)
    prompt = "The quick brown fox jumps over the lazy dog."
    for block_size in (8, 16):
        for threshold in (0.5, 1e9):
            options = {"block_size": block_size, "threshold": threshold, "max_new_tokens": 18}
            result = sbd_generate(loaded, prompt, **options)
            assert_same(loaded, result, reference_sbd(loaded, prompt, **options))


@pytest.mark.parametrize("family", DECODERS)
def test_eager_attention_decodes_like_sdpa(family):
    sdpa, eager = sbd_tiny(family), sbd_tiny(family, "eager")
    for threshold in (0.0, 1.5):
        options = {"block_size": 4, "threshold": threshold}
        result = sbd_generate(eager, PROMPT, max_new_tokens=NEW, **options)
        assert (
            result.token_ids == sbd_generate(sdpa, PROMPT, max_new_tokens=NEW, **options).token_ids
        )
        assert_same(eager, result, reference_sbd(eager, PROMPT, **options))


# Stop tokens, lengths, counting ---------------------------------------------------------------


@pytest.mark.parametrize("family", DECODERS)
def test_a_stop_token_revealed_mid_block_ends_generation_at_it(family):
    loaded = sbd_tiny(family)
    free = sbd_generate(loaded, PROMPT, block_size=4, threshold=math.inf, max_new_tokens=NEW)
    assert free.forwards == NEW // 4  # one pass per block: every slot revealed at once
    # the last token the model produces first at a block slot with slots after it
    at = [i for i, t in enumerate(free.token_ids) if free.token_ids.index(t) == i and i % 4 < 3][-1]
    stop = free.token_ids[at]

    plant_stop(loaded, stop)
    stopped = sbd_generate(loaded, PROMPT, block_size=4, threshold=math.inf, max_new_tokens=NEW)
    assert stopped.stopped_at_eos
    assert stopped.token_ids == free.token_ids[:at]  # the slots after the stop are dropped
    assert stopped.passes == free.passes[:at]
    assert stopped.forwards == at // 4 + 1
    assert stopped.text == loaded.tokenizer.decode(free.token_ids[:at])

    # with partial reveals the earlier slots of the stop's block are still finished
    for threshold in (0.0, 0.5, 1.5):
        for ntp_first in (False, True):
            options = {"block_size": 4, "threshold": threshold, "ntp_first": ntp_first}
            result = sbd_generate(loaded, PROMPT, max_new_tokens=NEW, **options)
            assert_same(loaded, result, reference_sbd(loaded, PROMPT, **options))


def test_max_new_tokens_is_respected():
    loaded = sbd_tiny("llama")
    for limit in (1, 5, 7, 8):
        everything = sbd_generate(loaded, PROMPT, block_size=4, threshold=1e9, max_new_tokens=limit)
        assert len(everything.token_ids) == limit
        assert everything.forwards == math.ceil(limit / 4)  # the last block is cut to fit
        one_by_one = sbd_generate(loaded, PROMPT, block_size=4, threshold=0.0, max_new_tokens=limit)
        assert len(one_by_one.token_ids) == limit
        assert sorted(one_by_one.passes) == list(range(1, limit + 1))  # llama: entropies > 0
        assert len(ar_generate(loaded, PROMPT, max_new_tokens=limit).token_ids) == limit
    plant_stop(loaded, everything.token_ids[2])
    short = sbd_generate(loaded, PROMPT, block_size=4, threshold=1e9, max_new_tokens=8)
    assert short.stopped_at_eos
    assert len(short.token_ids) + 1 <= 8


def test_every_model_call_is_counted():
    loaded = sbd_tiny("qwen2")
    calls = []
    handle = loaded.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        for threshold in (0.0, 1.5, 1e9):
            calls.clear()
            result = sbd_generate(
                loaded, PROMPT, block_size=4, threshold=threshold, max_new_tokens=NEW
            )
            assert result.forwards == len(calls)
            assert max(result.passes) == result.forwards  # the last pass produced a token
        calls.clear()
        ar = ar_generate(loaded, PROMPT, max_new_tokens=NEW)
        assert ar.forwards == len(calls) == NEW
    finally:
        handle.remove()


def test_the_result_describes_the_generation():
    loaded = sbd_tiny("gemma3")
    result = sbd_generate(loaded, PROMPT, block_size=4, threshold=1.5, max_new_tokens=NEW)
    tokenizer = loaded.tokenizer
    assert result.prompt == tokenizer.decode(tokenizer(PROMPT)["input_ids"])
    assert result.text == tokenizer.decode(result.token_ids, skip_special_tokens=True)
    assert result.pieces == [tokenizer.decode([t]) for t in result.token_ids]
    assert len(result.passes) == len(result.token_ids)
    blocks = [result.passes[i : i + 4] for i in range(0, NEW, 4)]
    assert all(max(a) < min(b) for a, b in itertools.pairwise(blocks))  # in order
    assert result.passes != sorted(result.passes)  # a later slot went first somewhere
    assert (result.method, result.block_size, result.threshold) == ("sbd", 4, 1.5)
    assert result.tokens_per_forward == len(result.token_ids) / result.forwards
    assert result.seconds > 0
    ar = ar_generate(loaded, PROMPT, max_new_tokens=NEW)
    assert (ar.method, ar.block_size, ar.threshold, ar.tokens_per_forward) == (
        "autoregressive",
        1,
        None,
        1.0,
    )


def test_a_neuron_mask_holds_for_the_call():
    loaded = sbd_tiny("llama")
    mask = NeuronMask("zero", {0: tuple(range(48)), 1: tuple(range(48))})  # every MLP neuron
    options = {"block_size": 4, "threshold": 1.5}
    masked = sbd_generate(loaded, PROMPT, max_new_tokens=NEW, mask=mask, **options)
    with apply_mask(loaded, mask):
        reference = reference_sbd(loaded, PROMPT, **options)
    assert_same(loaded, masked, reference)
    assert masked.token_ids != sbd_generate(loaded, PROMPT, max_new_tokens=NEW, **options).token_ids


# Per-call scope and refusals ------------------------------------------------------------------


def test_a_concurrent_plain_forward_is_untouched():
    loaded = sbd_tiny("gemma3")
    ids = loaded.tokenizer(PROMPT + " and more", return_tensors="pt")["input_ids"]

    def plain() -> torch.Tensor:
        with torch.no_grad():
            return loaded.model(input_ids=ids, use_cache=False).logits

    before = plain()
    expected = sbd_generate(loaded, PROMPT, block_size=4, threshold=0.5, max_new_tokens=NEW)
    inside, done = threading.Event(), threading.Event()
    decoder = {}

    def pause_once(module, args):
        if threading.current_thread().name == "sbd" and not inside.is_set():
            inside.set()  # the decoder's hooks are installed: let the plain forward run now
            done.wait(timeout=30)

    handle = loaded.model.register_forward_pre_hook(pause_once)
    thread = threading.Thread(
        target=lambda: decoder.setdefault(
            "result",
            sbd_generate(loaded, PROMPT, block_size=4, threshold=0.5, max_new_tokens=NEW),
        ),
        name="sbd",
    )
    try:
        thread.start()
        assert inside.wait(timeout=30)
        during = plain()
        done.set()
        thread.join(timeout=60)
    finally:
        done.set()
        handle.remove()
    assert torch.equal(during, before)
    assert decoder["result"].token_ids == expected.token_ids
    assert torch.equal(plain(), before)
    assert not any(module in _HOOKS for module in loaded.model.modules())


def test_two_concurrent_decodings_do_not_see_each_other():
    loaded = sbd_tiny("qwen2")
    settings = {"a": (4, 0.0, False), "b": (3, 1.5, True)}

    def decode(name: str):
        block_size, threshold, ntp_first = settings[name]
        return sbd_generate(
            loaded,
            PROMPT,
            block_size=block_size,
            threshold=threshold,
            max_new_tokens=NEW,
            ntp_first=ntp_first,
        )

    expected = {name: decode(name) for name in settings}
    barrier = threading.Barrier(2, timeout=30)
    met: set[str] = set()

    def meet_once(module, args):
        name = threading.current_thread().name
        if name in settings and name not in met:
            met.add(name)
            barrier.wait()  # both decoders are inside their first forward: their scopes overlap

    results = {}
    handle = loaded.model.register_forward_pre_hook(meet_once)
    threads = [
        threading.Thread(target=lambda n=name: results.setdefault(n, decode(n)), name=name)
        for name in settings
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        handle.remove()
    assert met == set(settings)
    for name in settings:
        assert results[name].token_ids == expected[name].token_ids
        assert results[name].passes == expected[name].passes


def test_a_model_without_the_mask_token_is_refused():
    loaded = tiny_model("llama")
    with pytest.raises(SubnetScopeError, match=r"not SBD-trained.*python -m engine sbd train"):
        sbd_generate(loaded, PROMPT, max_new_tokens=4)
    assert len(ar_generate(loaded, PROMPT, max_new_tokens=4).token_ids) <= 4  # AR still works


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"block_size": 0}, "block size"),
        ({"block_size": True}, "block size"),
        ({"threshold": -0.5}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_arguments_are_one_sentence(options, message):
    loaded = sbd_tiny("llama")
    with pytest.raises(SubnetScopeError, match=message):
        sbd_generate(loaded, PROMPT, **options)


def test_empty_prompts_and_encoders_are_refused():
    with pytest.raises(SubnetScopeError, match="empty"):
        sbd_generate(sbd_tiny("llama"), "  ")
    with pytest.raises(SubnetScopeError, match="empty"):
        ar_generate(sbd_tiny("llama"), "")
    with pytest.raises(SubnetScopeError, match="encoder"):
        sbd_generate(tiny_model("bert"), PROMPT)
