"""LRP relevance of MLP up-projection neurons and weights with LXT's efficient mode (seed 002).

Relevance is LXT's Gradient×Input after its patches: the gradient of the explained logits is the
modified (LRP) gradient. A weight's relevance is |W ⊙ ∂W| (seed 002), a neuron's is the sum of its
up-projection row. ∂W is computed from the up projection's input and output gradient
(∂W = Σ_t g_t ⊗ x_t, exactly what autograd would accumulate), so no parameter needs
`requires_grad` and the model's parameters are left untouched.

With CP-LRP rules (the default) `input_sum` equals `target_sum` up to biases. AttnLRP is not
conservative through the attention softmax (the AttnLRP paper's softmax rule lets its implicit bias
absorb relevance): on SmolLM2-135M it keeps about 40 % (3 texts, 105 tokens).

Precision: the LRP pass (forward and modified backward) runs in the model's own dtype, with no
upcast: a bf16 model is explained in bf16, as it computes. What is summed over texts and tokens
(relevance, ∂W, the conservation sums) is float32. The result records that precision and the
conservation tolerance rounding alone explains in it (`CONSERVATION_TOLERANCE`, measured on the
bias-free tiny models of tests/test_bf16_methods.py): a gap within it is conservation in that
precision; biases and AttnLRP's softmax rule add their own gap on top.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from engine.attribution.lxt_compat import guard_process, lxt_target, patch_for
from engine.errors import SubnetScopeError
from engine.models.devices import input_device
from engine.models.hooks import Hook, scoped_hooks
from engine.models.loading import LoadedModel

_CLAMP = 1e6  # seed 002: NaN → 0, ±Inf → ±1e6 before accumulating
# The conservation gap |input_sum − target_sum| / Σ|explained logit| that rounding in the pass's
# precision explains (bias-free CP-LRP conserves exactly in exact arithmetic). The scale is
# Σ|logit|, not |Σ logit|: rounding acts on the terms, and their sum can cancel to near 0 (on the
# tiny random models |target_sum| is down to 5 % of Σ|logit|). fp32: the bound tests/test_lrp.py
# has always held. bf16 / fp16: about 5 units of the format's rounding (2⁻⁸ / 2⁻¹¹); the largest
# gaps measured on bias-free tiny Llama / Qwen2 / Gemma-3 / GPT-2 (6 seeds each): 0.0032, 0.0003.
CONSERVATION_TOLERANCE = {"fp32": 1e-3, "bf16": 2e-2, "fp16": 2.5e-3}


@dataclass
class Relevance:
    """Per-layer LRP relevance of the up-projection neurons, summed over the explained texts."""

    neuron: dict[int, torch.Tensor]  # layer -> (neurons,): Σ_samples Σ_j |W_ij · ∂W_ij|
    activation: dict[int, torch.Tensor]  # layer -> (neurons,): Σ_samples,tokens up output · grad
    weight: dict[int, torch.Tensor] | None  # layer -> (neurons, hidden) |W ⊙ ∂W| (keep_weights)
    samples: int
    tokens: int
    target_sum: float  # Σ of the explained logits over all samples
    # Σ of the input-embedding relevance (embeds · grad); GPT-2's learned position embeddings are
    # inputs too and are included. Conservation would make it equal target_sum.
    input_sum: float
    # Σ |explained logit|: the size of what rounding acts on (target_sum may cancel to near 0)
    target_abs: float = 0.0
    precision: str = "fp32"  # the dtype the LRP pass ran in: fp32 | bf16 | fp16
    # the relative conservation gap rounding in `precision` explains (CONSERVATION_TOLERANCE)
    tolerance: float = CONSERVATION_TOLERANCE["fp32"]

    @property
    def conservation_gap(self) -> float:
        """|input_sum − target_sum| / Σ|explained logit| (see CONSERVATION_TOLERANCE)."""
        gap = abs(self.input_sum - self.target_sum)
        if self.target_abs == 0:
            return 0.0 if gap == 0 else float("inf")
        return gap / self.target_abs

    @property
    def conserved(self) -> bool:
        """Whether the input relevance sums to the explained logits within `tolerance`."""
        return self.conservation_gap <= self.tolerance


def _clean(tensor: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(tensor, nan=0.0, posinf=_CLAMP, neginf=-_CLAMP)


def _up_weight(module: torch.nn.Module, transposed: bool) -> torch.Tensor:
    """The up projection's weight as (neurons, hidden) in its stored dtype, no copy (GPT-2's Conv1D
    stores (in, out)); callers upcast one layer at a time, never the whole model at once."""
    base = getattr(module, "base_layer", None)
    weight = (base if isinstance(base, torch.nn.Module) else module).weight.detach()
    return weight.t() if transposed else weight


def precision_of(model: torch.nn.Module) -> str:
    """fp32 | bf16 | fp16: the dtype a model's LRP pass computes in (its embedding's)."""
    from engine.models.precision import dtype_choice

    dtype = model.get_input_embeddings().weight.dtype
    return dtype_choice(dtype) if dtype in (torch.bfloat16, torch.float16) else "fp32"


def _position_embedding(model: torch.nn.Module) -> torch.nn.Module | None:
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "wpe" and isinstance(module, torch.nn.Embedding):
            return module
    return None


def _check(loaded: LoadedModel, texts: list[str]) -> None:
    arch = loaded.architecture
    lxt_target(arch.model_type)
    if not loaded.is_causal_lm:
        raise SubnetScopeError("LRP explains next-token logits; it needs a causal language model")
    if any(block.up is None for block in arch.blocks):
        raise SubnetScopeError(
            f"LRP cannot find the MLP up projections of this {arch.family} model"
        )
    if not texts:
        raise SubnetScopeError("LRP needs at least one text to explain")


_Pairs = list[tuple[torch.Tensor, torch.Tensor]]  # (input, its gradient)


def _backward(
    model: torch.nn.Module,
    ids: torch.Tensor,
    captured: dict[int | str, tuple[torch.Tensor, torch.Tensor]],
    layers: list[int],
    start: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, _Pairs, list[torch.Tensor]]:
    """One text's teacher-forced target, Σ|logit| of its terms, its (input, gradient) pairs and the
    up outputs' gradients.

    All in float32, batch dimension dropped from the up-output gradients (tokens, neurons).
    """
    with torch.enable_grad():
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
        logits = model(inputs_embeds=embeds, use_cache=False).logits
        # the logits that predict tokens start.. (1: every token after the first)
        picked = logits[0, start - 1 : -1].gather(-1, ids[0, start:, None]).float()  # (tokens, 1)
        target = picked.sum()
        inputs = [embeds]
        if "position" in captured:
            inputs.append(captured["position"][0])
        outputs = [captured[layer][1] for layer in layers]
        grads = torch.autograd.grad(target, [*inputs, *outputs])
    pairs = [(x.detach().float(), g.float()) for x, g in zip(inputs, grads, strict=False)]
    magnitude = picked.detach().abs().sum()
    return target.detach(), magnitude, pairs, [g[0].float() for g in grads[len(inputs) :]]


def lrp_relevance(
    loaded: LoadedModel,
    texts: list[str],
    *,
    max_length: int = 128,
    keep_weights: bool = False,
    rules: str = "cp",
    explain_from: Sequence[int] | None = None,
    on_sample: Callable[[int, int], None] | None = None,
) -> Relevance:
    """LRP relevance of every up-projection neuron, explaining the teacher-forced next-token logits.

    Each text runs alone (no padding); its target is Σ_t logit[t, token[t+1]] over the tokens from
    `explain_from[i]` on (default 1: all; a prompt's length explains only its continuation).
    Texts with nothing to explain are skipped. LXT patches the model's classes for the
    whole process with `rules` (cp or attn, see lxt_compat), so run this in a job process, never
    in the dashboard.
    """
    guard_process()
    _check(loaded, texts)
    model, arch = loaded.model, loaded.architecture
    patch_for(model, rules)
    layers = list(range(arch.num_layers))
    up_modules = [model.get_submodule(arch.blocks[layer].up) for layer in layers]
    weights = [_up_weight(module, arch.transposed_weights) for module in up_modules]
    # float32 sums on each layer's own device, whatever the model's dtype
    neuron = {
        layer: torch.zeros(w.shape[0], dtype=torch.float32, device=w.device)
        for layer, w in enumerate(weights)
    }
    activation = {layer: torch.zeros_like(neuron[layer]) for layer in layers}
    weight_sums = {
        layer: torch.zeros(weights[layer].shape, dtype=torch.float32, device=weights[layer].device)
        for layer in layers
        if keep_weights
    }
    device = input_device(model)
    position = _position_embedding(model)

    captured: dict[int | str, tuple[torch.Tensor, torch.Tensor]] = {}

    def up_hook(layer: int):
        def hook(module, args, output):
            captured[layer] = (args[0], output)

        return hook

    def position_hook(module, args, output):
        # A leaf that requires grad, so its relevance can be read off like the token embeddings'.
        leaf = output.detach().requires_grad_()
        captured["position"] = (leaf, leaf)
        return leaf

    hooks: list[Hook] = [(up_modules[layer], "forward", up_hook(layer)) for layer in layers]
    if position is not None:
        hooks.append((position, "forward", position_hook))
    samples = tokens = 0
    target_sum = input_sum = target_abs = 0.0
    was_training = model.training
    # Exclusive: an inner pass's forwards would fire this pass's hooks too and overwrite the
    # tensors it reads, and LXT's process-wide patch holds one rule set at a time.
    try:
        with scoped_hooks(loaded, hooks, name="LRP", exclusive=True):
            model.eval()
            for done, text in enumerate(texts, start=1):
                encoded = loaded.tokenizer(
                    text, return_tensors="pt", truncation=True, max_length=max_length
                )
                ids = encoded.input_ids.to(device)
                start = max(1, int(explain_from[done - 1])) if explain_from is not None else 1
                if ids.shape[1] > start:
                    captured.clear()
                    target, magnitude, inputs, grads = _backward(
                        model, ids, captured, layers, start
                    )
                    target_sum += float(_clean(target))
                    target_abs += float(_clean(magnitude))
                    input_sum += float(_clean(sum((x * g).sum() for x, g in inputs)))
                    for layer, g in zip(layers, grads, strict=True):
                        x = captured[layer][0].detach()[0].float()  # (tokens, hidden)
                        z = captured[layer][1].detach()[0].float()  # (tokens, neurons)
                        activation[layer] += _clean((z * g).sum(0))
                        w = weights[layer].float()  # (neurons, hidden); no copy in fp32
                        scores = _clean((w * (g.t() @ x)).abs())  # (neurons, hidden)
                        neuron[layer] += _clean(scores.sum(1))
                        if keep_weights:
                            weight_sums[layer] += scores
                    samples += 1
                    tokens += ids.shape[1]
                if on_sample is not None:
                    on_sample(done, len(texts))
    finally:
        captured.clear()
        model.train(was_training)
    if samples == 0:
        raise SubnetScopeError("LRP needs texts of at least two tokens; every text was shorter")
    return Relevance(
        neuron={layer: t.cpu() for layer, t in neuron.items()},
        activation={layer: t.cpu() for layer, t in activation.items()},
        weight={layer: t.cpu() for layer, t in weight_sums.items()} if keep_weights else None,
        samples=samples,
        tokens=tokens,
        target_sum=target_sum,
        input_sum=input_sum,
        target_abs=target_abs,
        precision=precision_of(model),
        tolerance=CONSERVATION_TOLERANCE[precision_of(model)],
    )
