"""Blend an adapter set: PEFT's 11 combination types, our exact low-rank svd/cat, measured errors.

Every blend is measured against the exact weighted update Σ wᵢ·sᵢ·BᵢAᵢ of each module, from the
factors (no d×d matrices), so a wrong merge shows as a large error.

PEFT's `add_weighted_adapter` needs a PeftModel; it runs here on a skeleton that holds only the
target linear layers (zero base weights), since the blend never reads the base.

Known PEFT behaviour (0.21.2), see tests/test_lora_blend.py:
- The blended adapter's config copies `use_rslora` from the first input while its factors already
  carry each input's scaling, so with rslora inputs PEFT's result is √r too large (PEFT #3761,
  #3449). engine="peft" reports that result as PEFT gives it; engine="auto" applies the intended
  scaling 1 and says so in `notes`.
- "linear" (and ties, dare_*, magnitude_prune) combine the A's and the B's separately:
  (Σ √|wᵢsᵢ|·Bᵢ)(Σ sign(wᵢ)·√|wᵢsᵢ|·Aᵢ). A negative weight flips the sign of its A only, so each
  own term wᵢsᵢBᵢAᵢ is right (PEFT #2918); the cross terms BᵢAⱼ remain by design (PEFT #3004), and
  show as this method's error. We keep PEFT's definition rather than invent another.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from engine.errors import SubnetScopeError
from engine.lora.adapters import PEFT_PREFIX, AdapterSet
from engine.lora.lowrank import (
    Factors,
    cat_blend,
    difference_norm,
    frobenius,
    lowrank_svd,
    stacked,
    svd_blend,
)
from engine.lora.methods import DENSITY_METHODS, ENGINES, METHODS

BLEND_NAME = "blend"  # the PEFT adapter name of the result


@dataclass(frozen=True)
class BlendSpec:
    """How to blend: one weight per adapter, a PEFT combination type and its options."""

    weights: tuple[float, ...]
    method: str = "svd"
    rank: int | None = None  # svd types: the blend's rank (default: the largest input rank)
    density: float | None = None  # ties, dare_*, magnitude_prune*: the fraction kept
    majority_sign_method: str = "total"  # ties types: "total" | "frequency"
    engine: str = "auto"  # "auto": our exact low-rank svd/cat, PEFT for the rest; "peft": PEFT
    seed: int = 0  # dare_* drop at random: the torch seed, so a blend is reproducible


@dataclass(frozen=True)
class BlendResult:
    """The blended factors per module and how far they are from the exact weighted update."""

    spec: BlendSpec
    factors: dict[str, Factors]  # per module: B (out, k), A (k, in), scale
    errors: dict[str, float]  # per module: ‖blend − exact‖_F / ‖exact‖_F
    truncation: dict[str, float]  # per module: the best rank-k error, k = the blend's rank
    error: float  # over all modules: sqrt(Σ ‖diff‖²) / sqrt(Σ ‖exact‖²)
    truncation_total: float
    engine: str  # "lowrank" or "peft"
    seconds: float
    rank: int = 0  # the largest module rank of the blend
    notes: tuple[str, ...] = field(default=())


def check_spec(adapters: AdapterSet, spec: BlendSpec) -> None:
    """One clear error for a spec that cannot run on this set."""
    if spec.method not in METHODS:
        raise SubnetScopeError(
            f"Unknown blend method '{spec.method}'; choose one of {', '.join(METHODS)}."
        )
    if spec.engine not in ENGINES:
        raise SubnetScopeError(f"Unknown blend engine '{spec.engine}'; choose auto or peft.")
    if len(spec.weights) != len(adapters.adapters):
        raise SubnetScopeError(
            f"Got {len(spec.weights)} weights for {len(adapters.adapters)} adapters; "
            "give one weight per adapter."
        )
    for name, w in zip(adapters.names, spec.weights, strict=True):
        if not math.isfinite(float(w)):
            raise SubnetScopeError(f"The weight of adapter '{name}' must be finite, got {w}.")
    if spec.rank is not None and spec.rank < 1:
        raise SubnetScopeError(f"The blend rank must be at least 1, got {spec.rank}.")
    if spec.method in DENSITY_METHODS:
        if spec.density is None:
            raise SubnetScopeError(f"Blend method '{spec.method}' needs a density in (0, 1].")
        if not 0 < spec.density <= 1:
            raise SubnetScopeError(f"The density must be in (0, 1], got {spec.density}.")
    if spec.majority_sign_method not in ("total", "frequency"):
        raise SubnetScopeError(
            "majority_sign_method must be 'total' or 'frequency', "
            f"not '{spec.majority_sign_method}'."
        )


def exact_factors(adapters: AdapterSet, weights: tuple[float, ...]) -> dict[str, Factors]:
    """Per module the exact weighted update Σ wᵢ·sᵢ·BᵢAᵢ as one factor pair of rank Σ rᵢ."""
    return {
        m: stacked([a.factors[m] for a in adapters.adapters], weights) for m in adapters.modules
    }


# ---- PEFT on a skeleton ----


def _skeleton(adapters: AdapterSet) -> nn.Module:
    """An nn.Module tree with only the target layers, at their paths, with zero weights."""
    root = nn.Module()
    # PEFT combines in the skeleton's dtype: float32 at least, as our own low-rank blends.
    dtype = torch.promote_types(
        adapters.adapters[0].factors[adapters.modules[0]].b.dtype, torch.float32
    )
    for path in adapters.modules:
        parent = root
        *parents, leaf = path.split(".")
        for part in parents:
            child = getattr(parent, part, None)
            if child is None:
                child = nn.Module()
                parent.add_module(part, child)
            parent = child
        out_features, in_features = adapters.shape(path)
        with torch.device("meta"):  # no init cost; the real (zero) weight is set below
            linear = nn.Linear(in_features, out_features, bias=False, dtype=dtype)
        linear.weight = nn.Parameter(
            torch.zeros(out_features, in_features, dtype=dtype), requires_grad=False
        )
        parent.add_module(leaf, linear)
    return root


def _lora_config(adapters: AdapterSet, index: int, as_configured: bool):
    """The adapter's LoraConfig on the skeleton; `as_configured=False` drops rslora (see below)."""
    from peft import LoraConfig

    info = adapters.adapters[index].info
    return LoraConfig(
        target_modules=list(adapters.modules),
        r=info.rank,
        lora_alpha=info.alpha,
        use_rslora=info.use_rslora and as_configured,
        rank_pattern=dict(info.rank_pattern),
        alpha_pattern=dict(info.alpha_pattern) if as_configured else {},
        lora_dropout=0.0,
        bias="none",
        init_lora_weights=True,
    )


# PEFT's DARE / TIES draw from torch's global generator (they take no generator argument): two
# browser sessions blending at once would interleave their draws. One at a time, and the
# generator's state is restored afterwards.
_GLOBAL_RNG = threading.Lock()


@contextlib.contextmanager
def _seeded(seed: int):
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _peft_blend(
    adapters: AdapterSet, spec: BlendSpec
) -> tuple[dict[str, Factors], tuple[str, ...]]:
    """Run PEFT's add_weighted_adapter on a skeleton holding the set's factors."""
    import warnings

    from peft import get_peft_model

    # engine="peft" runs PEFT on the configs as they are. engine="auto" loads them without
    # rslora and sets each module's scaling itself, so the blended adapter's copied config has
    # scaling 1 as PEFT intends (PEFT #3761).
    as_configured = spec.engine == "peft"
    names = [f"a{i}" for i in range(len(adapters.adapters))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns that a bare nn.Module has no config
        model = get_peft_model(
            _skeleton(adapters), _lora_config(adapters, 0, as_configured), names[0]
        )
        for i, name in enumerate(names[1:], start=1):
            model.add_adapter(name, _lora_config(adapters, i, as_configured))
    lora_model = model.base_model
    notes: list[str] = []
    with torch.no_grad():
        for name, adapter in zip(names, adapters.adapters, strict=True):
            for path, f in adapter.factors.items():
                layer = lora_model.model.get_submodule(path)
                layer.lora_A[name].weight.copy_(f.a)
                layer.lora_B[name].weight.copy_(f.b)
                if not as_configured:
                    layer.scaling[name] = f.scale
                elif not math.isclose(layer.scaling[name], f.scale, rel_tol=1e-9):
                    raise SubnetScopeError(
                        f"PEFT scales adapter '{adapter.name}' at {path} by "
                        f"{layer.scaling[name]} but its config gives {f.scale}."
                    )
        try:
            with _seeded(spec.seed):
                lora_model.add_weighted_adapter(
                    names,
                    [float(w) for w in spec.weights],
                    BLEND_NAME,
                    combination_type=spec.method,
                    svd_rank=spec.rank,
                    density=spec.density,
                    majority_sign_method=spec.majority_sign_method,
                    # The thin SVD: the same rank-k truncation without the full U and V, whose
                    # unused columns make PEFT's default about twice as slow.
                    svd_full_matrices=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise SubnetScopeError(
                f"PEFT's '{spec.method}' blend failed: {str(exc).splitlines()[0]}"
            ) from exc
        factors = {}
        scales = set()
        for path in adapters.modules:
            layer = lora_model.model.get_submodule(path)
            a = layer.lora_A[BLEND_NAME].weight.detach().clone()  # (k, in)
            b = layer.lora_B[BLEND_NAME].weight.detach().clone()  # (out, k)
            scale = float(layer.scaling[BLEND_NAME])
            scales.add(scale)
            factors[path] = Factors(b, a, scale)
    if spec.engine == "peft":
        if scales != {1.0}:
            notes.append(
                f"PEFT gave the blended adapter scaling {sorted(scales)[-1]:.4g} instead of 1 "
                "(rslora inputs, PEFT #3761); the error shows it."
            )
    elif any(a.info.use_rslora for a in adapters.adapters):
        notes.append("rslora inputs: the blend's scaling is set to 1, as PEFT intends (#3761).")
    return factors, tuple(notes)


# ---- errors ----


def _measure(
    result: dict[str, Factors],
    exact: dict[str, Factors],
    measured: dict[str, tuple[float, float]] | None = None,
) -> tuple[dict[str, float], dict[str, float], float, float]:
    """Per-module relative error and truncation (best rank-k error), and their totals.

    `measured` holds per-module (error, truncation) that the low-rank path computed already
    against the same exact update; only the norms are computed again for the totals.
    """
    errors, truncation = {}, {}
    diff_sq = exact_sq = dropped_sq = 0.0
    for module, target in exact.items():
        norm = frobenius(target)
        if measured is not None and norm > 0:
            errors[module], truncation[module] = measured[module]
            diff, dropped = errors[module] * norm, (truncation[module] * norm) ** 2
        else:
            got = result[module]
            diff = difference_norm(got, target)
            s = lowrank_svd(target).s.double()
            dropped = float((s[min(got.rank, s.numel()) :] ** 2).sum())
            errors[module] = diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)
            truncation[module] = math.sqrt(dropped) / norm if norm > 0 else 0.0
        diff_sq += diff**2
        exact_sq += norm**2
        dropped_sq += dropped
    total = math.sqrt(exact_sq)
    error = math.sqrt(diff_sq) / total if total > 0 else (0.0 if diff_sq == 0 else math.inf)
    return errors, truncation, error, (math.sqrt(dropped_sq) / total if total > 0 else 0.0)


def blend(adapters: AdapterSet, spec: BlendSpec) -> BlendResult:
    """Blend the set as `spec` says; the result carries its error against the exact update."""
    spec = BlendSpec(**{**spec.__dict__, "weights": tuple(float(w) for w in spec.weights)})
    check_spec(adapters, spec)
    started = time.perf_counter()
    exact = exact_factors(adapters, spec.weights)
    notes: tuple[str, ...] = ()
    if spec.engine == "auto" and spec.method in ("svd", "cat"):
        engine = "lowrank"
        # PEFT's default svd rank: the largest config rank, rank_pattern included.
        ranks = [r for a in adapters.adapters for r in (a.info.rank, *a.info.rank_pattern.values())]
        rank = spec.rank or max(ranks)
        factors, measured = {}, {}
        for module in adapters.modules:
            inputs = [a.factors[module] for a in adapters.adapters]
            if spec.method == "svd":
                result = svd_blend(inputs, spec.weights, rank)
            else:
                result = cat_blend(inputs, spec.weights)
            # Measured inside against the same exact update: ‖result − exact‖ by QR, not assumed.
            factors[module], measured[module] = result.factors, (result.error, result.truncation)
    else:
        engine, measured = "peft", None
        factors, notes = _peft_blend(adapters, spec)
    seconds = time.perf_counter() - started
    errors, truncation, error, truncation_total = _measure(factors, exact, measured)
    return BlendResult(
        spec=spec,
        factors=factors,
        errors=errors,
        truncation=truncation,
        error=error,
        truncation_total=truncation_total,
        engine=engine,
        seconds=seconds,
        rank=max(f.rank for f in factors.values()),
        notes=notes,
    )


# ---- saving ----

SAVED_FILES = ("adapter_config.json", "adapter_model.safetensors", "blend.json", "README.md")


def save_blend(result: BlendResult, adapters: AdapterSet, out_dir: str | Path) -> Path:
    """Write the blend as a PEFT LoRA folder (scaling 1: r = lora_alpha) loadable on the base.

    Beside PEFT's two files, blend.json records the inputs, weights, method and errors.
    """
    import json

    from engine.atomic import atomic_dir, save_safetensors_atomic, write_json_atomic

    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise SubnetScopeError(f"Cannot save the blend to {out}: it is a file.")
    if out.is_dir() and any(p.name not in SAVED_FILES for p in out.iterdir()):
        raise SubnetScopeError(
            f"Cannot save the blend to {out}: the folder holds other files; choose a new folder."
        )
    if set(result.factors) != set(adapters.modules):
        raise SubnetScopeError("The blend does not belong to this adapter set.")
    rank = max(f.rank for f in result.factors.values())
    tensors: dict[str, torch.Tensor] = {}
    for module in adapters.modules:
        f = result.factors[module]
        # The scale is folded into B, and every module padded with zeros to the one rank r.
        b = torch.zeros(f.shape[0], rank, dtype=f.b.dtype)  # (out, r)
        a = torch.zeros(rank, f.shape[1], dtype=f.a.dtype)  # (r, in)
        b[:, : f.rank] = f.b * f.scale
        a[: f.rank] = f.a
        tensors[f"{PEFT_PREFIX}{module}.lora_A.weight"] = a.contiguous()
        tensors[f"{PEFT_PREFIX}{module}.lora_B.weight"] = b.contiguous()
    first = adapters.adapters[0].info
    try:
        source_config = json.loads((first.path / "adapter_config.json").read_text())
    except (OSError, ValueError):
        source_config = {}
    config = {
        "peft_type": "LORA",
        "task_type": source_config.get("task_type"),
        "base_model_name_or_path": first.base_model,
        "r": rank,
        "lora_alpha": rank,
        "use_rslora": False,
        "use_dora": False,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": bool(source_config.get("fan_in_fan_out", False)),
        "target_modules": list(adapters.modules),
        "rank_pattern": {},
        "alpha_pattern": {},
        "inference_mode": True,
    }
    spec = result.spec
    record = {
        "adapters": [
            {"name": a.name, "path": str(a.info.path), "weight": w}
            for a, w in zip(adapters.adapters, spec.weights, strict=True)
        ],
        "method": spec.method,
        "rank": rank,
        "density": spec.density,
        "majority_sign_method": spec.majority_sign_method,
        "engine": result.engine,
        "error": result.error,
        "truncation": result.truncation_total,
        "notes": list(result.notes),
    }
    # A new folder appears whole, and a re-saved one is replaced whole: never old and new mixed.
    with atomic_dir(out) as tmp:
        save_safetensors_atomic(tmp / "adapter_model.safetensors", tensors, {"format": "pt"})
        write_json_atomic(tmp / "blend.json", record)
        write_json_atomic(tmp / "adapter_config.json", config)
    return out
