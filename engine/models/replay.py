"""Replay a forward from a middle block: ablating an MLP neuron of block L leaves blocks 0…L-1
unchanged, so measuring it needs only blocks L… and the head, run from the inputs the unablated
forward gave block L.

`capture_replay` runs the model once and keeps what each block received (its hidden states for
the blocks a caller will start from; every block's other arguments: attention mask, rotary
embeddings, position ids) and what the final norm received. It then replays the stack from its
earliest kept block and checks the result against the model's own logits; a family whose forward
does more between its blocks and its head than one final norm (Gemma-3n's AltUp streams and
shared key/values, for example) fails that check, and `capture_replay` returns None so callers
run the whole model. Hooks open around a replay (neuron masks) fire exactly as in a full forward.

Same inputs, same operations: blocks replayed without a mask reproduce the full forward's hidden
states bit for bit. The head runs on the rows a caller picks (`logits`), which may round
differently from the full forward's batched head in the last float32 place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.errors import SubnetScopeError
from engine.models.hooks import scoped_hooks
from engine.models.loading import LoadedModel

_FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "norm_f")
_TOLERANCE = 1e-4  # of the largest |logit|: agreement the capture check demands in float32


def _tolerance(dtype: torch.dtype) -> float:
    """The check's bound in the logits' dtype: 1e-4, or two units in the last place of a 16-bit
    float (bf16: 2⁻⁶ of the largest |logit|), where a head on picked rows rounds differently."""
    return max(_TOLERANCE, 2 * torch.finfo(dtype).eps) if dtype.is_floating_point else _TOLERANCE


@dataclass
class LayerReplay:
    """The unablated forward's block inputs, ready to rerun the stack from a kept block."""

    blocks: list[nn.Module]
    hidden_in: dict[int, torch.Tensor]  # block → the hidden states it received (kept blocks)
    extras: list[tuple[tuple, dict[str, Any]]]  # block → its other positional and keyword args
    final: torch.Tensor  # what the final norm received
    norm: nn.Module
    head: nn.Module
    softcap: float | None

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(sorted(self.hidden_in))

    def start_for(self, layer: int) -> int | None:
        """The latest kept block at or before `layer` (replaying from it is exact for changes
        in `layer` and later), or None where no kept block is early enough."""
        earlier = [start for start in self.hidden_in if start <= layer]
        return max(earlier) if earlier else None

    def hidden(self, layer: int | None) -> torch.Tensor:
        """The final norm's input with blocks from `layer`'s start on rerun (under whatever hooks
        the caller has open); None: the unablated forward's."""
        if layer is None:
            return self.final
        start = self.start_for(layer)
        if start is None:
            raise SubnetScopeError(f"no replay starts at or before block {layer}")
        hidden = self.hidden_in[start]
        for index in range(start, len(self.blocks)):
            args, kwargs = self.extras[index]
            out = self.blocks[index](hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head on hidden states of any leading shape (rows picked by the caller)."""
        logits = self.head(self.norm(hidden))
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def _final_norm(loaded: LoadedModel) -> nn.Module | None:
    block = loaded.architecture.blocks[0].path  # e.g. model.layers.0
    base = block.rsplit(".", 2)[0] if block.count(".") >= 2 else ""
    owner = loaded.model.get_submodule(base)
    for name in _FINAL_NORMS:
        module = getattr(owner, name, None)
        if isinstance(module, nn.Module):
            return module
    return None


def _softcap(config: Any) -> float | None:
    for holder in (config, getattr(config, "text_config", None)):
        value = getattr(holder, "final_logit_softcapping", None)
        if value:
            return float(value)
    return None


def capture_replay(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    starts: Iterable[int],
) -> LayerReplay | None:
    """Run the model once on the batch and keep what replaying from each block of `starts`
    needs; None where this model's forward cannot be replayed exactly (checked here)."""
    arch = loaded.architecture
    starts = sorted({int(s) for s in starts if 0 <= int(s) < arch.num_layers})
    norm, head = _final_norm(loaded), loaded.model.get_output_embeddings()
    if not starts or norm is None or head is None:
        return None
    blocks = [loaded.model.get_submodule(b.path) for b in arch.blocks]
    hidden_in: dict[int, torch.Tensor] = {}
    extras: list[tuple[tuple, dict[str, Any]] | None] = [None] * len(blocks)
    final: list[torch.Tensor] = []

    def keep(index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if args:
                hidden, rest, named = args[0], args[1:], dict(kwargs)
            else:  # hidden states passed by keyword
                named = dict(kwargs)
                hidden, rest = named.pop("hidden_states"), ()
            extras[index] = (rest, named)
            if index in starts:
                hidden_in[index] = hidden

        return hook

    hooks = [(block, "pre-kwargs", keep(i)) for i, block in enumerate(blocks)]
    hooks.append((norm, "pre", lambda module, args: final.append(args[0])))
    try:
        with torch.inference_mode(), scoped_hooks(loaded, hooks, name="replay capture"):
            full = loaded.model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).logits
        if len(final) != 1 or any(e is None for e in extras) or len(hidden_in) != len(starts):
            return None
        softcap = _softcap(loaded.model.config)
        replay = LayerReplay(blocks, hidden_in, extras, final[0], norm, head, softcap)  # type: ignore[arg-type]
        with torch.inference_mode():
            checks = [replay.logits(replay.final), replay.logits(replay.hidden(starts[0]))]
    except (RuntimeError, TypeError, ValueError, KeyError, IndexError):
        return None  # a forward this replay does not model
    scale = float(full.abs().max()) or 1.0
    bound = _tolerance(full.dtype) * scale
    for logits in checks:
        if logits.shape != full.shape or float((logits - full).abs().max()) > bound:
            return None
    return replay
