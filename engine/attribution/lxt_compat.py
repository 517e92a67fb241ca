"""LXT 2.1 (efficient mode) on transformers 5: import shims, per-family patches, a guard."""

from __future__ import annotations

import importlib
import sys
import threading
import traceback
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

import torch

from engine.errors import SubnetScopeError
from engine.models.loading import LoadedModel, load_model


@dataclass(frozen=True)
class LxtTarget:
    """Where a model type's classes live and which LXT module holds its patch maps."""

    modeling: str  # the transformers modeling module that monkey_patch rewrites
    lxt_module: str


def _target(name: str) -> LxtTarget:
    return LxtTarget(f"transformers.models.{name}.modeling_{name}", f"lxt.efficient.models.{name}")


SUPPORTED_MODEL_TYPES: dict[str, LxtTarget] = {
    "llama": _target("llama"),  # SmolLM2 is a Llama
    "qwen2": _target("qwen2"),
    "qwen3": _target("qwen3"),
    "gemma3": _target("gemma3"),
    "gemma3_text": _target("gemma3"),
    "gpt2": _target("gpt2"),
}
SUPPORTED_FAMILIES = "Llama (SmolLM2), Qwen2, Qwen3, Gemma-3 and GPT-2"
# LXT's two rule sets. CP-LRP stops the relevance flowing through the attention softmax, so the
# input relevance sums to the explained logits (conservation, measured exact on the tiny models and
# SmolLM2); AttnLRP also propagates through the softmax, whose rule is not conservative: on
# SmolLM2-135M about 40 % of the target reaches the inputs. The MLP rules are the same in both.
RULES = {"cp": "cp_LRP", "attn": "attnLRP"}

# lxt.efficient.models imports these eagerly; on transformers 5 the BERT copy fails
# (transformers.modeling_attn_mask_utils is gone) and the ViT one needs torchvision.
_OPTIONAL_LXT_MODULES = {
    "bert.py": ("lxt.efficient.models.bert", "modeling_bert", "attnLRP"),
    "vit_torch.py": ("lxt.efficient.models.vit_torch", "vision_transformer", "cp_LRP"),
}

_lock = threading.Lock()
_patched: dict[str, str] = {}  # modeling module -> the rules it was patched with


def guard_process() -> None:
    """Refuse to patch torch inside the dashboard process: LXT's patches cannot be undone."""
    if "streamlit" in sys.modules:
        raise SubnetScopeError(
            "LRP patches torch process-wide; run it as a job (attribution.compute) "
            "instead of inside the dashboard process"
        )


def lxt_target(model_type: str) -> LxtTarget:
    """The LXT target of a model type, or a SubnetScopeError naming the supported families."""
    target = SUPPORTED_MODEL_TYPES.get(model_type)
    if target is None:
        raise SubnetScopeError(
            f"LRP (LXT) does not support model type '{model_type}'; "
            f"supported families: {SUPPORTED_FAMILIES}"
        )
    return target


def _stub(name: str, module_attr: str, map_attr: str) -> None:
    stub = types.ModuleType(name, "Placeholder: this LXT model module cannot import here.")
    # lxt.efficient.models builds DEFAULT_MAP from these two attributes; keys must be unique.
    setattr(stub, module_attr, types.ModuleType(f"{name}.unavailable"))
    setattr(stub, map_attr, {})
    sys.modules[name] = stub


def _failing_optional_module(exc: BaseException) -> str | None:
    for frame in traceback.extract_tb(exc.__traceback__):
        path = PurePath(frame.filename)
        if path.parent.name == "models" and path.name in _OPTIONAL_LXT_MODULES:
            return path.name
    return None


def import_lxt() -> types.ModuleType:
    """Import lxt.efficient, stubbing its BERT/ViT model modules where their own imports fail."""
    for _ in range(len(_OPTIONAL_LXT_MODULES) + 1):
        try:
            with warnings.catch_warnings():
                # zennit only serves LXT's vision transformers.
                warnings.filterwarnings("ignore", message="'zennit' library is not available")
                return importlib.import_module("lxt.efficient")
        except ImportError as exc:
            failing = _failing_optional_module(exc)
            if failing is None or _OPTIONAL_LXT_MODULES[failing][0] in sys.modules:
                raise SubnetScopeError(f"cannot import LXT (lxt 2.1): {exc}") from exc
            _stub(*_OPTIONAL_LXT_MODULES[failing])
    raise SubnetScopeError("cannot import LXT (lxt 2.1): its model modules keep failing to import")


class _AttentionFunctions(dict):
    """A plain dict with transformers 5's `AttentionInterface.get_interface` lookup."""

    def get_interface(self, attn_implementation: str | None, default: Callable) -> Callable:
        # Mirrors transformers' AttentionInterface.get_interface; "eager" is not a key, it means
        # `default`: the module's eager_attention_forward, which LXT has wrapped in place.
        if attn_implementation is not None:
            if attn_implementation.startswith("paged|") and attn_implementation != "paged|eager":
                attn_implementation = attn_implementation.removeprefix("paged|")
            elif attn_implementation != "eager" and attn_implementation not in self:
                raise KeyError(
                    f"`{attn_implementation}` is not a valid attention implementation registered "
                    "in the `AttentionInterface`"
                )
        return self.get(attn_implementation, default)


def patch_for(model: torch.nn.Module, rules: str = "cp") -> None:
    """Apply LXT's monkey patch (`rules`: cp or attn) to the model type's modeling module, once.

    The patches replace methods on the classes (and module-level attention functions), so models
    created before the call are affected as well as models created after it.
    """
    guard_process()
    model_type = str(getattr(getattr(model, "config", None), "model_type", type(model).__name__))
    target = lxt_target(model_type)
    if rules not in RULES:
        raise SubnetScopeError(f"unknown LRP rules '{rules}'; use cp (CP-LRP) or attn (AttnLRP)")
    with _lock:
        if target.modeling in _patched:
            if _patched[target.modeling] != rules:
                raise SubnetScopeError(
                    f"this process already patched {model_type} with {_patched[target.modeling]} "
                    f"rules; LXT cannot re-patch, so run {rules} rules in another job"
                )
            return
        lxt_efficient = import_lxt()
        modeling = importlib.import_module(target.modeling)
        patch_map = getattr(importlib.import_module(target.lxt_module), RULES[rules])
        with warnings.catch_warnings():
            # Shared classes (torch.nn.Dropout) patched for an earlier family warn "already
            # patched" / "Failed to patch"; that is the intended idempotent outcome.
            warnings.filterwarnings("ignore", message=".*already patched.*")
            warnings.filterwarnings("ignore", message="Failed to patch .*")
            lxt_efficient.monkey_patch(modeling, patch_map)
        # lxt's patch_attention swaps ALL_ATTENTION_FUNCTIONS for a plain dict, but transformers 5
        # calls ALL_ATTENTION_FUNCTIONS.get_interface(...) on it.
        if not hasattr(modeling.ALL_ATTENTION_FUNCTIONS, "get_interface"):
            modeling.ALL_ATTENTION_FUNCTIONS = _AttentionFunctions(modeling.ALL_ATTENTION_FUNCTIONS)
        _patched[target.modeling] = rules


def load_for_lrp(
    source: str,
    *,
    rules: str = "cp",
    trust_remote_code: bool = False,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """A job's load for LRP: gradients possible, LXT patched for the model's type.

    `dtype` None or "auto" is float32: LRP's relevance then conserves to fp32 rounding whatever
    the checkpoint stores. bf16 / fp16 run the whole pass in that dtype (half the memory), and the
    result records it with the looser conservation tolerance it allows (engine/attribution/lrp.py).
    """
    guard_process()
    from engine.models.precision import dtype_choice

    choice = dtype_choice(dtype)
    loaded = load_model(
        source,
        trust_remote_code=trust_remote_code,
        inference=False,
        dtype=torch.float32 if choice == "auto" else choice,
    )
    loaded.model.eval()
    patch_for(loaded.model, rules)
    return loaded
