"""Where a stored tensor sits in the model: its block (layer), module and role (up/gate/down/...).

With a config.json the model is built on the meta device (no weights, no memory) and
`engine.models.detect_architecture` names its blocks and MLP projections; without one, common
block-list names (`layers`, `h`, `layer`, `blocks`) and projection names are recognized. Tensor
names are matched on the block-list segment (`...layers.<i>.<module>`), so a checkpoint whose
keys carry another prefix than the model class (`h.0` against `transformer.h.0`) still maps.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

GENERIC_LEAVES = ("layers", "h", "layer", "blocks", "block")
# Role of an in-block module when no architecture names it, by its name relative to the block.
_GENERIC_ROLES = (
    (re.compile(r"(^|\.)(up_proj|c_fc|fc1|intermediate\.dense)$"), "up"),
    (re.compile(r"(^|\.)gate_proj$"), "gate"),
    (re.compile(r"(^|\.)(down_proj|mlp\.c_proj|fc2|output\.dense)$"), "down"),
    (re.compile(r"norm|(^|\.)ln_"), "norm"),  # before attention: self_attn.q_norm is a norm
    (re.compile(r"attn|attention"), "attention"),
)
ROLES = ("up", "gate", "down", "attention", "norm", "other", "embedding", "head")


@dataclass(frozen=True)
class TensorPlace:
    """A tensor's place: `layer` is -1 outside the blocks (embeddings, final norm, head)."""

    layer: int
    module: str  # relative to its block ("mlp.up_proj"), or the full module name outside blocks
    role: str  # one of ROLES
    param: str  # "weight", "bias", ...


@dataclass(frozen=True)
class TensorLayout:
    """How to place tensor names: block-list names, in-block roles, weight orientation."""

    family: str
    num_layers: int | None  # None: count the blocks the tensor names mention
    leaves: tuple[str, ...] = GENERIC_LEAVES
    roles: dict[str, str] = field(default_factory=dict)  # in-block module name → role
    # GPT-2's Conv1D stores (in, out): the MLP neurons are then columns of up, rows of down.
    transposed_weights: bool = False
    notes: tuple[str, ...] = ()

    def place(self, name: str) -> TensorPlace:
        module, _, param = name.rpartition(".")
        if not module:
            module, param = name, ""
        found = _block_pattern(self.leaves).match(module)
        if found is None:
            return TensorPlace(-1, module, _outside_role(module), param)
        rel = found["rel"]
        return TensorPlace(
            int(found["index"]), rel, self.roles.get(rel) or _in_block_role(rel), param
        )

    def neuron_axis(self, role: str) -> int | None:
        """The axis of a 2-D MLP weight that indexes the FFN's neurons (None for other roles)."""
        if role in ("up", "gate"):
            return 1 if self.transposed_weights else 0
        if role == "down":
            return 0 if self.transposed_weights else 1
        return None


@lru_cache(maxsize=16)
def _block_pattern(leaves: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(leaf) for leaf in leaves)
    # Lazy prefix: the first block-list segment wins.
    return re.compile(rf"^(?:.*?\.)?(?:{alternatives})\.(?P<index>\d+)\.(?P<rel>.+)$")


def _in_block_role(rel: str) -> str:
    for pattern, role in _GENERIC_ROLES:
        if pattern.search(rel):
            return role
    return "other"


def _outside_role(module: str) -> str:
    leaf = module.rsplit(".", 1)[-1]
    if re.search(r"(^|[._])embed", module) or leaf in ("wte", "wpe"):  # not altup_unembed
        return "embedding"
    if leaf in ("lm_head", "score", "classifier") or module.startswith("cls."):
        return "head"
    if "norm" in leaf or leaf.startswith("ln"):
        return "norm"
    return "other"


def generic_layout(names: list[str] | None = None) -> TensorLayout:
    """The layout without a config: common names; GPT-2 orientation if its names appear."""
    transposed = any(".mlp.c_fc." in n for n in names or [])
    return TensorLayout(family="generic", num_layers=None, transposed_weights=transposed)


def _relative(path: str, name: str | None) -> str | None:
    return name[len(path) + 1 :] if name and name.startswith(path + ".") else None


def _build_meta_model(config_dir: Path):
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    config = AutoConfig.from_pretrained(config_dir, trust_remote_code=False)
    errors = []
    for cls in (AutoModelForCausalLM, AutoModelForMaskedLM, AutoModel):
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return cls.from_config(config)
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
            errors.append(f"{cls.__name__}: {exc}")
    raise ValueError("; ".join(errors))


@lru_cache(maxsize=32)
def _layout_from_config(config_dir: str, mtime_ns: int) -> TensorLayout:
    from engine.models import detect_architecture

    try:
        model = _build_meta_model(Path(config_dir))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fallback rule's warning lands in `notes`
            arch = detect_architecture(model)
    except Exception as exc:  # any config the meta build cannot handle: use generic names
        log.info("no architecture for %s (%s); using generic tensor names", config_dir, exc)
        note = f"architecture not recognized ({type(exc).__name__}); generic tensor names"
        return TensorLayout(family="generic", num_layers=None, notes=(note,))
    first = arch.blocks[0]
    parts = first.path.split(".")
    digits = [i for i, p in enumerate(parts) if p.isdigit()]
    leaves = (parts[digits[-1] - 1],) if digits and digits[-1] > 0 else GENERIC_LEAVES
    block_root = ".".join(parts[: digits[-1] + 1]) if digits else first.path
    roles: dict[str, str] = {}
    named = [(first.up, "up"), (first.gate, "gate"), (first.down, "down")]
    named += [(a, "attention") for a in first.attention] + [(n, "norm") for n in first.norms]
    for module, role in named:
        if (rel := _relative(block_root, module)) is not None:
            roles[rel] = role
    return TensorLayout(
        family=arch.family,
        num_layers=arch.num_layers,
        leaves=leaves,
        roles=roles,
        transposed_weights=arch.transposed_weights,
        notes=tuple(arch.notes),
    )


def layout_for(config_dir: Path | None, names: list[str] | None = None) -> TensorLayout:
    """The layout of a model folder with a config.json, else the generic one."""
    config = config_dir / "config.json" if config_dir is not None else None
    if config is None or not config.is_file():
        return generic_layout(names)
    return _layout_from_config(str(config_dir.resolve()), config.stat().st_mtime_ns)
