"""Loading a language model and its tokenizer: `demo`, a local folder, a GGUF file, a hub id."""

from __future__ import annotations

import functools
import os
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from engine.errors import SubnetScopeError
from engine.models.architectures import Architecture, detect_architecture
from engine.models.demo import DEMO_NAME, DEMO_SOURCE, ensure_demo_model
from engine.models.devices import input_device
from engine.models.memory import MemoryPlan, check_fits, plan_for_config
from engine.models.precision import checkpoint_dtype, resolve_dtype
from engine.models.sources import named_source
from engine.runtime import hub_reachable

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_ENCODER_TYPES = {"bert", "roberta"}


def is_hub_id(text: str) -> bool:
    """`name` or `owner/name` as the hub spells repositories: no path, no '..' or '--', at most
    96 characters (the hub's own limit)."""
    return (
        len(text) <= 96
        and _HUB_ID.fullmatch(text) is not None
        and ".." not in text
        and "--" not in text
    )


@dataclass
class LoadedModel:
    """A model ready for inference, with what every view needs to address its neurons."""

    source: str
    display_name: str
    model: nn.Module
    tokenizer: object
    architecture: Architecture
    device: torch.device
    dtype: torch.dtype
    is_causal_lm: bool
    # Serializes hook installation on this shared model; calls themselves run concurrently.
    hook_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


# A fast tokenizer keeps truncation and padding in its Rust backend and resets them on each call
# (transformers' set_truncation_and_padding, then encode_batch): two sessions encoding at once on
# the shared tokenizer truncate each other's text, or fail with "Already borrowed"
# (huggingface/tokenizers#537). One lock per tokenizer makes each call's set-and-encode atomic.
_ENCODE_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENCODE_LOCKS_GUARD = threading.Lock()


def _encode_lock(tokenizer: object) -> threading.RLock:
    with _ENCODE_LOCKS_GUARD:
        lock = _ENCODE_LOCKS.get(tokenizer)
        if lock is None:
            lock = _ENCODE_LOCKS[tokenizer] = threading.RLock()
        return lock


def _serialized_encode(tokenizer: object, *args, **kwargs):
    with _encode_lock(tokenizer):
        return type(tokenizer)._encode_plus(tokenizer, *args, **kwargs)


def share_tokenizer(tokenizer: object) -> object:
    """Make a fast tokenizer safe to call from several threads at once, whatever truncation or
    padding each call asks for: every encode (`tokenizer(...)`, `encode`, chat templates) runs
    under the tokenizer's own lock. Slow tokenizers keep no such state and are left alone. The
    wrapper is a partial of a module function, so the tokenizer still pickles and deep-copies."""
    if getattr(tokenizer, "is_fast", False) and "_encode_plus" not in vars(tokenizer):
        tokenizer._encode_plus = functools.partial(_serialized_encode, tokenizer)
    return tokenizer


def choose_device() -> tuple[torch.device, torch.dtype]:
    """CUDA → Apple MPS → CPU; bf16 where CUDA supports it, fp32 elsewhere."""
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.device("cuda"), dtype
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps"), torch.float32
    return torch.device("cpu"), torch.float32


@dataclass(frozen=True)
class ResolvedSource:
    """Where from_pretrained should look: a folder or hub id, plus a GGUF file name inside it."""

    kind: str  # "demo" | "folder" | "gguf" | "hub"
    location: str
    gguf_file: str | None = None


def resolve_source(source: str) -> ResolvedSource:
    """Classify a source string; a local path that does not exist is an error, not a hub id."""
    if source == DEMO_SOURCE:
        return ResolvedSource("demo", str(ensure_demo_model()))
    named = named_source(source)
    if named is not None:
        if not named.ready():
            raise SubnetScopeError(named.missing)
        return ResolvedSource("folder", str(named.path()))
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise SubnetScopeError(
                f"'{source}' is a file but not a .gguf model; give a model folder"
            )
        return ResolvedSource("gguf", str(path.parent), path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ResolvedSource("folder", str(path))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ResolvedSource("gguf", str(path), ggufs[0].name)
        raise SubnetScopeError(f"'{source}' is a folder without config.json (or a single .gguf)")
    if source.startswith((".", "/", "~")) or not _HUB_ID.match(source):
        raise SubnetScopeError(f"no model at '{source}': no such file or folder")
    return ResolvedSource("hub", source)


def _hub_error(source: str, exc: Exception) -> SubnetScopeError:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        reason = "hub access is off (HF_HUB_OFFLINE=1) and it is not in the local hub cache"
    elif not hub_reachable():
        reason = "the Hugging Face hub is unreachable and it is not in the local hub cache"
    else:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = f"the hub has no such model or refused access ({detail[:160]})"
    return SubnetScopeError(f"cannot load '{source}': it is not a local folder or file; {reason}")


def _load_kwargs(resolved: ResolvedSource, dtype: torch.dtype, trust_remote_code: bool) -> dict:
    kwargs: dict = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if resolved.kind == "hub" and not hub_reachable():
        # Use the local hub cache only: online lookups would retry a closed network for ~30 s.
        kwargs["local_files_only"] = True
    if resolved.gguf_file:
        kwargs["gguf_file"] = resolved.gguf_file
    elif resolved.kind != "hub" and any(Path(resolved.location).glob("*.safetensors")):
        kwargs["use_safetensors"] = True
    if torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"
    return kwargs


@contextmanager
def _load_errors(resolved: ResolvedSource, source: str) -> Iterator[None]:
    """What transformers raises while reading a source, as one SubnetScopeError."""
    try:
        yield
    except OSError as exc:
        if resolved.kind == "hub":
            raise _hub_error(source, exc) from exc
        raise SubnetScopeError(f"cannot load '{source}': {str(exc).splitlines()[0]}") from exc
    except ValueError as exc:
        raise _value_error(source, exc) from exc


def _config(resolved: ResolvedSource, source: str, hub_kwargs: dict):
    from transformers import AutoConfig

    with _load_errors(resolved, source):
        return AutoConfig.from_pretrained(resolved.location, **hub_kwargs)


def _value_error(source: str, exc: ValueError) -> SubnetScopeError:
    if "trust_remote_code" in str(exc):
        return SubnetScopeError(
            f"'{source}' needs custom code from its repository; load it with "
            "trust_remote_code=True only if you trust that code"
        )
    return SubnetScopeError(f"cannot load '{source}': {str(exc).splitlines()[0]}")


def _hub_kwargs(resolved: ResolvedSource, trust_remote_code: bool) -> dict:
    kwargs = {"trust_remote_code": trust_remote_code, "gguf_file": resolved.gguf_file}
    if resolved.kind == "hub" and not hub_reachable():
        kwargs["local_files_only"] = True
    return kwargs


def _placement(
    device: torch.device | str | None, dtype: str | torch.dtype | None, config: object
) -> tuple[torch.device, torch.dtype]:
    auto_device, _ = choose_device()
    device = torch.device(device) if device is not None else auto_device
    return device, resolve_dtype(dtype, device, checkpoint_dtype(config))


def plan_load(
    source: str = DEMO_SOURCE,
    *,
    dtype: str | torch.dtype | None = None,
    device: torch.device | str | None = None,
    trust_remote_code: bool = False,
) -> MemoryPlan:
    """What loading `source` in `dtype` will need (engine/models/memory.py), from its config
    alone: no weight is read, and the demo model is not prepared for it."""
    config = source_config(source, trust_remote_code=trust_remote_code)
    device, torch_dtype = _placement(device, dtype, config)
    return plan_for_config(config, torch_dtype, device, source)


def source_config(source: str, *, trust_remote_code: bool = False) -> object:
    """The transformers config of `source`, read without its weights; a zoo model that is not
    built gives its config all the same (its plan needs no weights), the demo must be ready."""
    from engine.models.demo import demo_is_ready
    from engine.models.zoo import ZOO_PREFIX, zoo_config, zoo_ready

    if source == DEMO_SOURCE and not demo_is_ready():
        raise SubnetScopeError("the demo model is not prepared yet")
    if source.startswith(ZOO_PREFIX) and not zoo_ready(source.removeprefix(ZOO_PREFIX)):
        return zoo_config(source)
    resolved = resolve_source(source)
    return _config(resolved, source, _hub_kwargs(resolved, trust_remote_code))


def load_model(
    source: str = DEMO_SOURCE,
    *,
    trust_remote_code: bool = False,
    device: torch.device | str | None = None,
    dtype: str | torch.dtype | None = None,
    inference: bool = True,
    check_memory: bool = True,
    tokenizer: object | None = None,
) -> LoadedModel:
    """Load a causal LM (or BERT-style encoder) with its tokenizer, on the best device available.

    `dtype`: auto | bf16 | fp16 | fp32 or a torch dtype (engine/models/precision.py; None is
    auto). Before any weight is read, the memory the load needs is planned from the config and a
    load that would not fit is refused in one sentence (`check_memory`).
    `inference=True` puts the model in eval mode with gradients off: it is meant to be shared
    read-only (masks and adapters apply per call). Jobs that train or attribute pass False.
    `tokenizer` replaces the source's own: a training checkpoint saves none (its base's reads it).
    """
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    resolved = resolve_source(source)
    hub_kwargs = _hub_kwargs(resolved, trust_remote_code)
    config = _config(resolved, source, hub_kwargs)
    device, dtype = _placement(device, dtype, config)
    if check_memory:
        check_fits(plan_for_config(config, dtype, device, source))
    kwargs = _load_kwargs(resolved, dtype, trust_remote_code)
    is_causal = config.model_type not in _ENCODER_TYPES
    model_cls = AutoModelForCausalLM if is_causal else AutoModelForMaskedLM
    with _load_errors(resolved, source):
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(resolved.location, **hub_kwargs)
        model = model_cls.from_pretrained(resolved.location, **kwargs)
    if resolved.gguf_file:
        # Weights come out dequantized; the GGUF quantizer marker would only confuse save/merge.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if "device_map" not in kwargs:
        model.to(device)
    if inference:  # shared by the dashboard's sessions (training jobs own theirs)
        model.eval()
        model.requires_grad_(False)
        share_tokenizer(tokenizer)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    display = DEMO_NAME if resolved.kind == "demo" else source
    return LoadedModel(
        source=source,
        display_name=display,
        model=model,
        tokenizer=tokenizer,
        architecture=detect_architecture(model),
        device=input_device(model),
        dtype=next(model.parameters()).dtype,
        is_causal_lm=is_causal,
    )


def wrap_model(model: nn.Module, tokenizer: object, source: str = "in-memory") -> LoadedModel:
    """A LoadedModel around a model built in memory (tests, jobs that construct their own)."""
    param = next(model.parameters())
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    return LoadedModel(
        source=source,
        display_name=source,
        model=model,
        tokenizer=share_tokenizer(tokenizer),
        architecture=detect_architecture(model),
        device=input_device(model),
        dtype=param.dtype,
        is_causal_lm=model_type not in _ENCODER_TYPES,
    )
