"""Training diagnostics (issue 22): gradient flow, layer activity and memorization during a run.

Layer activity, every `diagnostics_every` steps (`LayerProbe`), on the job's own training model:
- `grad_norm`: ‖g‖₂ per module of the gradient the step's backward accumulated, read by a
  post-accumulate-grad hook on each trainable parameter, so it is the gradient before any
  clipping (TRL's max_grad_norm clips afterwards; the trainer's own `train/grad_norm` is the
  same pre-clip total over every parameter). With several backward passes in one step (PPO's
  mini-batches) it is the last one's.
- `update_norm`: ‖θ_after − θ_before‖₂ per module over that step (a copy of the tracked
  parameters is held from the step's start to its end), and `param_norm`: ‖θ_after‖₂.
- `act_mean`, `act_std`, `act_rms`: over every element of each block's output hidden state at
  the real (attention-mask) tokens of the step's training forward passes — those run with
  gradients on, so generation and scoring passes (no_grad) are left out.
A module is a parameter's owner path (`model.layers.3.self_attn.q_proj`; PEFT's
`base_model.model.` prefix and adapter name dropped, so a LoRA run shows `….q_proj.lora_A`);
norms of its weight and bias combine (√ of the summed squares). Rows go to
`diagnostics.parquet` (step, layer, module, kind, value); the totals over the model go out as
`diag/*` metric events.

Memorization vs generalization (`track_memorization`, `MemorizationTracker`): at step 0, every
`diagnostics_every` steps and at the end, the mean next-token loss (nats per token) of each text
of a fixed sample of training texts (members) and of held-back texts the run never trains on
(non-members), and the loss-threshold membership-inference attack between them ("member" when
loss ≤ t, Yeom et al. 2018): advantage = max over t of TPR − FPR (the one-sided
Kolmogorov–Smirnov statistic of the two loss samples), and AUC = P(member loss < non-member
loss) + ½ P(equal). Small samples reach some advantage by chance (16 + 16 texts: 0.375 at the
95th percentile), so each row also carries that chance level (a permutation test), and step 0
(before training) shows where the run starts. Rows go to `memorization.parquet`, the
numbers to `mem/*` metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine.errors import SubnetScopeError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from engine.jobs import JobContext

DIAGNOSTICS_TABLE = "diagnostics.parquet"
MEMORIZATION_TABLE = "memorization.parquet"
COLUMNS = ("step", "layer", "module", "kind", "value")
NORM_KINDS = ("grad_norm", "update_norm", "param_norm")
ACTIVATION_KINDS = ("act_mean", "act_std", "act_rms")
KINDS = NORM_KINDS + ACTIVATION_KINDS
MEMORIZATION_COLUMNS = (
    "step",
    "train_loss",  # mean over member texts of each text's mean token loss (nats)
    "heldout_loss",  # the same over the held-back texts
    "gap",  # heldout_loss − train_loss
    "advantage",  # max over thresholds of TPR − FPR, in [0, 1]
    "auc",
    "threshold",  # the loss threshold reaching the advantage (NaN when it is 0)
    "chance_advantage",  # 95th percentile of the advantage under random relabeling
    "members",
    "nonmembers",
)
PEFT_PREFIX = "base_model.model."
_BLOCK_LISTS = ("layers", "h", "blocks", "layer")  # what engine.lora.adapters.module_layer reads


def module_of(name: str, adapter: str = "default") -> str:
    """A parameter's module path: PEFT's prefix and adapter name dropped, `.weight` / `.bias`
    cut (`base_model.model.model.layers.0.mlp.up_proj.lora_A.default.weight` →
    `model.layers.0.mlp.up_proj.lora_A`)."""
    name = name.removeprefix(PEFT_PREFIX)
    parts = [p for p in name.split(".") if p != adapter]
    if parts and parts[-1] in ("weight", "bias"):
        parts.pop()
    return ".".join(parts)


def _layer(path: str) -> int | None:
    from engine.lora.adapters import module_layer

    return module_layer(path)


def trainable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that require grad, by name (a tied tensor once, under its first name)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def blocks(model: nn.Module) -> tuple[nn.Module | None, dict[str, nn.Module]]:
    """The transformer's backbone (the module holding the block list) and its blocks by path:
    the longest ModuleList named layers / h / blocks / layer."""
    from torch import nn

    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or name.rsplit(".", 1)[-1] not in _BLOCK_LISTS:
            continue
        if best is None or len(module) > len(best[1]):
            best = (name, module)
    if best is None:
        return None, {}
    name, layers = best
    parent = name.rpartition(".")[0]
    backbone = model.get_submodule(parent) if parent else model
    clean = module_of(name)
    return backbone, {f"{clean}.{i}": block for i, block in enumerate(layers)}


_ROW = 4096  # elements per fp32 partial norm
_CHUNK = 1 << 20  # elements per slice of a difference (no full-size temporary)


def square_norm(t: torch.Tensor) -> torch.Tensor:
    """‖t‖² as a 0-d fp64 tensor: fp32 norms of 4096-element rows summed in fp64. On a CPU one
    fp32 pass over the demo's 28M-element embedding is 0.16 % off and an fp64 one 25× slower."""
    import torch

    flat = t.detach().reshape(-1)
    n = flat.numel() // _ROW * _ROW
    dtype = torch.float64 if flat.dtype == torch.float64 else torch.float32
    rows = torch.linalg.vector_norm(flat[:n].view(-1, _ROW), dim=1, dtype=dtype)
    tail = torch.linalg.vector_norm(flat[n:], dtype=torch.float64)
    return rows.double().square().sum() + tail.square()


def _row_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ t as a 0-d fp64 tensor, summed like `square_norm`."""
    import torch

    flat = t.detach().reshape(-1)
    n = flat.numel() // _ROW * _ROW
    dtype = torch.float64 if flat.dtype == torch.float64 else torch.float32
    rows = flat[:n].view(-1, _ROW).sum(dim=1, dtype=dtype)
    return rows.double().sum() + flat[n:].sum(dtype=torch.float64)


def square_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a − b‖² (0-d fp64), in slices; the difference is taken in the tensors' own dtype, exact
    wherever the two are within 2× of each other (Sterbenz), as weights one step apart are."""
    import torch

    fa, fb = a.detach().reshape(-1), b.detach().reshape(-1)
    total = torch.zeros((), dtype=torch.float64, device=fa.device)
    for start in range(0, fa.numel(), _CHUNK):
        total += square_norm(fa[start : start + _CHUNK] - fb[start : start + _CHUNK])
    return total


def _norms_by_module(squares: Mapping[str, float]) -> dict[str, float]:
    """√ of the summed squared norms of each module's parameters."""
    out: dict[str, float] = {}
    for name, square in squares.items():
        module = module_of(name)
        out[module] = out.get(module, 0.0) + float(square)
    return {m: math.sqrt(s) for m, s in out.items()}


class LayerProbe:
    """Hooks on a training model for one step: `arm()` before it, `collect(step)` after it.

    `tracked` gives the tensors whose update and norm are measured (default: the parameters
    that require grad when armed); a run that changes other tensors than it trains (rank-1
    merging's random-projection LoRA merges into frozen weights) passes its own."""

    def __init__(
        self,
        model: nn.Module,
        tracked: Callable[[], Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        self.model = model
        self.tracked = tracked or (lambda: trainable_parameters(model))
        self.handles: list[Any] = []
        self.grads: dict[str, torch.Tensor] = {}  # name -> ‖g‖² (0-d, fp64) at its last backward
        self.acts: dict[str, list] = {}  # block path -> [Σx, Σx², count]
        self.before: dict[str, torch.Tensor] = {}
        self.mask: torch.Tensor | None = None  # (batch, seq) of the backbone's last call

    def arm(self) -> None:
        import torch

        self.remove()
        self.grads, self.acts = {}, {}
        for name, p in trainable_parameters(self.model).items():
            self.handles.append(p.register_post_accumulate_grad_hook(self._grad_hook(name)))
        backbone, found = blocks(self.model)
        if backbone is not None:
            self.handles.append(
                backbone.register_forward_pre_hook(self._mask_hook, with_kwargs=True)
            )
        for path, block in found.items():
            self.handles.append(block.register_forward_hook(self._act_hook(path)))
        with torch.no_grad():
            self.before = {n: t.detach().clone() for n, t in self.tracked().items()}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _grad_hook(self, name: str) -> Callable:

        def hook(p: torch.Tensor) -> None:
            if p.grad is not None:
                self.grads[name] = square_norm(p.grad)

        return hook

    def _mask_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask")
        self.mask = mask if mask is not None and getattr(mask, "ndim", 0) == 2 else None

    def _act_hook(self, path: str) -> Callable:
        import torch

        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not torch.is_grad_enabled():
                return  # generation or scoring, not a training forward
            hidden = output[0] if isinstance(output, tuple | list) else output
            if not isinstance(hidden, torch.Tensor) or hidden.ndim != 3:
                return
            hidden = hidden.detach()  # (batch, seq, hidden)
            mask = self.mask
            if mask is not None and tuple(mask.shape) == tuple(hidden.shape[:2]):
                hidden = hidden[mask.to(hidden.device).bool()]  # (real tokens, hidden)
            total = self.acts.setdefault(path, [0.0, 0.0, 0])
            total[0] = total[0] + _row_sum(hidden)
            total[1] = total[1] + square_norm(hidden)
            total[2] += hidden.numel()

        return hook

    def collect(self, step: int) -> list[dict]:
        """The step's rows; removes the hooks and drops the copy."""
        import torch

        self.remove()
        with torch.no_grad():
            after = dict(self.tracked().items())
            updates = {
                n: square_distance(t, self.before[n])
                for n, t in after.items()
                if n in self.before and self.before[n].shape == t.shape
            }
            params = {n: square_norm(t) for n, t in after.items()}
        self.before = {}
        rows = []
        for kind, squares in (("grad_norm", self.grads), ("update_norm", updates)):
            rows += _rows(step, kind, _norms_by_module({n: float(v) for n, v in squares.items()}))
        rows += _rows(
            step, "param_norm", _norms_by_module({n: float(v) for n, v in params.items()})
        )
        for path, (total, squares, count) in self.acts.items():
            if not count:
                continue
            mean, mean_square = float(total) / count, float(squares) / count
            stats = {
                "act_mean": mean,
                "act_std": math.sqrt(max(mean_square - mean * mean, 0.0)),
                "act_rms": math.sqrt(mean_square),
            }
            rows += [_row(step, path, kind, value) for kind, value in stats.items()]
        self.grads, self.acts = {}, {}
        return rows


def _row(step: int, module: str, kind: str, value: float) -> dict:
    return {
        "step": int(step),
        "layer": _layer(module),
        "module": module,
        "kind": kind,
        "value": value,
    }


def _rows(step: int, kind: str, norms: Mapping[str, float]) -> list[dict]:
    return [_row(step, module, kind, value) for module, value in norms.items()]


def totals(rows: Sequence[dict]) -> dict[str, float]:
    """One step's model-wide numbers: total grad / update / param norm, update/param, the mean
    block activation RMS."""
    out: dict[str, float] = {}
    for kind in NORM_KINDS:
        values = [r["value"] for r in rows if r["kind"] == kind]
        if values:
            out[kind] = math.sqrt(sum(v * v for v in values))
    if out.get("param_norm"):
        out["update_ratio"] = out.get("update_norm", 0.0) / out["param_norm"]
    rms = [r["value"] for r in rows if r["kind"] == "act_rms"]
    if rms:
        out["act_rms"] = float(np.mean(rms))
    return out


def diagnostics_frame(rows: Sequence[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    frame["layer"] = frame["layer"].astype("Int64")  # None for modules outside the blocks
    return frame


def layer_table(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Per step and layer, one number for a chart: norms combine over the layer's modules
    (√ of the summed squares); activation statistics are per block already. Modules outside
    the blocks (embeddings, final norm, LM head) are left out. Columns: step, layer, value."""
    if kind not in KINDS:
        raise SubnetScopeError(f"kind must be one of {', '.join(KINDS)}, not '{kind}'")
    rows = table[(table["kind"] == kind) & table["layer"].notna()]
    if kind in NORM_KINDS:
        grouped = rows.groupby(["step", "layer"])["value"].apply(
            lambda v: float(np.sqrt((v.astype(float) ** 2).sum()))
        )
    else:
        grouped = rows.groupby(["step", "layer"])["value"].mean()
    out = grouped.reset_index()
    out["layer"] = out["layer"].astype(int)
    return out[["step", "layer", "value"]]


def read_diagnostics(result_dir: str | Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """A job result folder's diagnostics and memorization tables (None where it has none)."""
    folder = Path(result_dir)
    tables = []
    for name in (DIAGNOSTICS_TABLE, MEMORIZATION_TABLE):
        path = folder / name
        tables.append(pd.read_parquet(path) if path.is_file() else None)
    return tables[0], tables[1]


# --- memorization --------------------------------------------------------------------------


def mia_advantage(
    member_losses: Sequence[float], nonmember_losses: Sequence[float]
) -> dict[str, float]:
    """The loss-threshold membership-inference attack ("member" when loss ≤ t): advantage =
    max over t of TPR(t) − FPR(t) (0 when no threshold does better than chance), the threshold
    that reaches it, and AUC = P(member < non-member) + ½ P(equal)."""
    m = np.sort(np.asarray(member_losses, dtype=np.float64))
    n = np.sort(np.asarray(nonmember_losses, dtype=np.float64))
    if m.size == 0 or n.size == 0 or not (np.isfinite(m).all() and np.isfinite(n).all()):
        raise SubnetScopeError(
            "the attack needs finite losses of at least one member and one non-member"
        )
    thresholds = np.unique(np.concatenate([m, n]))
    tpr = np.searchsorted(m, thresholds, side="right") / m.size
    fpr = np.searchsorted(n, thresholds, side="right") / n.size
    best = int(np.argmax(tpr - fpr))
    advantage = float(max(0.0, tpr[best] - fpr[best]))
    below = (m[:, None] < n[None, :]).sum()
    ties = (m[:, None] == n[None, :]).sum()
    return {
        "advantage": advantage,
        "threshold": float(thresholds[best]) if advantage > 0 else float("nan"),
        "auc": float((below + 0.5 * ties) / (m.size * n.size)),
    }


def chance_advantage(
    member_losses: Sequence[float],
    nonmember_losses: Sequence[float],
    *,
    rounds: int = 1000,
    quantile: float = 0.95,
    seed: int = 0,
) -> float:
    """The advantage chance alone reaches on samples of these sizes: its `quantile` over
    `rounds` random relabelings of the pooled losses (a permutation test). With 16 + 16 texts
    it is 0.375 (exactly: P(advantage > 6/16) = C(32, 9) / C(32, 16) = 4.7 %), so only an
    advantage above it says the model tells members apart."""
    pooled = np.concatenate(
        [
            np.asarray(member_losses, dtype=np.float64),
            np.asarray(nonmember_losses, dtype=np.float64),
        ]
    )
    size = len(member_losses)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        order = rng.permutation(pooled.size)
        values.append(mia_advantage(pooled[order[:size]], pooled[order[size:]])["advantage"])
    return float(np.quantile(values, quantile, method="inverted_cdf"))


def text_losses(
    model: nn.Module, tokenizer, texts: Sequence[str], *, max_length: int, batch_size: int = 8
) -> np.ndarray:
    """Each text's mean next-token loss (nats per predicted token), scored on its own up to
    max_length tokens (right padding, pads masked: exact for a causal model); NaN for a text of
    fewer than 2 tokens."""
    import torch
    import torch.nn.functional as F

    from engine.models.devices import input_device

    device = input_device(model)
    out = np.full(len(texts), np.nan)
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "right"
    try:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            enc = tokenizer(
                chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)  # (B, L)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # (B, L-1)
            real = mask[:, 1:].float()
            counts = real.sum(dim=1)
            per_text = (nll * real).sum(dim=1) / counts.clamp(min=1)
            values = torch.where(counts > 0, per_text, torch.nan)
            out[start : start + len(chunk)] = values.cpu().numpy()
    finally:
        model.train(was_training)
        tokenizer.padding_side = side
    return out


def hold_back(texts: Sequence[str], count: int, seed: int) -> tuple[list[str], list[str]]:
    """(texts to train on, `count` held-back texts): a seeded draw, so a run that tracks
    memorization trains on the rest only."""
    if len(texts) <= count:
        raise SubnetScopeError(
            f"{len(texts)} texts cannot hold back memorization_examples ({count}) and still "
            "train on the rest"
        )
    order = np.random.default_rng(seed).permutation(len(texts))
    held = {int(i) for i in order[:count]}
    return [t for i, t in enumerate(texts) if i not in held], [texts[i] for i in sorted(held)]


def memorization_split(texts: Sequence[str], config: Any) -> tuple[list[str], list[str]]:
    """(texts to train on, held-back texts) of a run without a held-out split of its own (SFT):
    `memorization_examples` held back when it tracks memorization, none otherwise."""
    if not getattr(config, "track_memorization", False):
        return list(texts), []
    return hold_back(texts, int(config.memorization_examples), int(config.seed))


@dataclass
class MemorizationTracker:
    """Member (training) and non-member (held-back) texts, scored whenever `score` is called."""

    ctx: JobContext
    tokenizer: Any
    members: list[str]
    nonmembers: list[str]
    max_length: int
    batch_size: int = 8
    rows: list[dict] = field(default_factory=list)

    def score(self, model: nn.Module, step: int) -> dict:
        train = text_losses(
            model,
            self.tokenizer,
            self.members,
            max_length=self.max_length,
            batch_size=self.batch_size,
        )
        held = text_losses(
            model,
            self.tokenizer,
            self.nonmembers,
            max_length=self.max_length,
            batch_size=self.batch_size,
        )
        train, held = train[np.isfinite(train)], held[np.isfinite(held)]
        attack = mia_advantage(train, held)
        row = {
            "step": int(step),
            "train_loss": float(train.mean()),
            "heldout_loss": float(held.mean()),
            "gap": float(held.mean() - train.mean()),
            **attack,
            "chance_advantage": chance_advantage(train, held),
            "members": int(train.size),
            "nonmembers": int(held.size),
        }
        self.rows.append(row)
        for name in ("train_loss", "heldout_loss", "gap", "advantage", "chance_advantage", "auc"):
            self.ctx.metric(f"mem/{name}", row[name], step=step)
        self.ctx.write_table(MEMORIZATION_TABLE, self.table())
        return row

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(MEMORIZATION_COLUMNS))


def memorization_sets(
    train: Sequence[str], heldout: Sequence[str], count: int, seed: int
) -> tuple[list[str], list[str]]:
    """(members, non-members): `count` seeded training texts and the first `count` held-out
    ones (all of either when it has fewer)."""
    pick = np.random.default_rng(seed + 1).permutation(len(train))[: min(count, len(train))]
    return [train[int(i)] for i in sorted(pick)], list(heldout[:count])


# --- the run's side --------------------------------------------------------------------------


@dataclass
class TrainingDiagnostics:
    """What a run asked for, called around its steps: `begin(model)` once before the first
    step, `before_step(s)` and `after_step(s)` around optimizer step s (1-based), `close()` at
    the end. Layer rows at every multiple of `every` (0: none); memorization at step 0, those
    steps and the last one."""

    ctx: JobContext
    every: int
    total_steps: int
    memorization: MemorizationTracker | None = None
    tracked: Callable[[], Mapping[str, torch.Tensor]] | None = None
    model: Any = None
    probe: LayerProbe | None = None
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # spent outside the training passes: copies, norms, scoring

    def begin(self, model: nn.Module) -> None:
        self.model = model
        if self.memorization is not None:
            started = time.perf_counter()
            self.memorization.score(model, 0)
            self.seconds += time.perf_counter() - started

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def before_step(self, step: int) -> None:
        if self.model is None or not self.due(step):
            return
        started = time.perf_counter()
        self.probe = LayerProbe(self.model, self.tracked)
        self.probe.arm()
        self.seconds += time.perf_counter() - started

    def after_step(self, step: int) -> None:
        started = time.perf_counter()
        if self.probe is not None:
            rows = self.probe.collect(step)
            self.probe = None
            self.rows += rows
            for name, value in totals(rows).items():
                self.ctx.metric(f"diag/{name}", value, step=step)
            self.ctx.write_table(DIAGNOSTICS_TABLE, diagnostics_frame(self.rows))
        memorize = self.memorization is not None and (self.due(step) or step == self.total_steps)
        if memorize and not any(r["step"] == step for r in self.memorization.rows):
            self.memorization.score(self.model, step)
        self.seconds += time.perf_counter() - started

    def close(self) -> None:
        """Removes any hooks left and logs the time the diagnostics took."""
        if self.probe is not None:
            self.probe.remove()
            self.probe = None
        if not self.every and self.memorization is None:
            return
        self.ctx.log(
            f"diagnostics: {self.seconds:.2f} s outside the training passes "
            f"({len(self.rows)} layer rows, "
            f"{len(self.memorization.rows) if self.memorization else 0} memorization scores)"
        )


def diagnostics_for(
    config: Any,
    ctx: JobContext,
    *,
    tokenizer: Any = None,
    train: Sequence[str] | None = None,
    heldout: Sequence[str] | None = None,
    tracked: Callable[[], Mapping[str, torch.Tensor]] | None = None,
) -> TrainingDiagnostics | None:
    """The run's diagnostics from its config (`diagnostics_every`, `track_memorization`,
    `memorization_examples`), or None when it asks for none. Memorization needs the run's
    training and held-out texts."""
    every = int(getattr(config, "diagnostics_every", 0) or 0)
    memorize = bool(getattr(config, "track_memorization", False))
    if not every and not memorize:
        return None
    tracker = None
    if memorize:
        if tokenizer is None or not train or not heldout:
            raise SubnetScopeError(
                "track_memorization needs training texts and held-out texts of the task"
            )
        members, nonmembers = memorization_sets(
            train, heldout, int(config.memorization_examples), int(config.seed)
        )
        tracker = MemorizationTracker(
            ctx, tokenizer, members, nonmembers, int(config.max_length), int(config.batch_size)
        )
    return TrainingDiagnostics(ctx, every, int(config.steps), tracker, tracked)


def loop_diagnostics(
    config: Any,
    ctx: JobContext,
    model: nn.Module,
    *,
    tokenizer: Any,
    train: Sequence[str],
    heldout: Sequence[str],
    tracked: Callable[[], Mapping[str, torch.Tensor]] | None = None,
) -> TrainingDiagnostics:
    """For a plain training loop: the run's diagnostics begun on `model` (inert when the config
    asks for none), to call as `before_step(s)`, optimizer step s, `after_step(s)`, `close()`."""
    diagnostics = diagnostics_for(
        config, ctx, tokenizer=tokenizer, train=train, heldout=heldout, tracked=tracked
    )
    diagnostics = diagnostics or TrainingDiagnostics(ctx, 0, int(config.steps))
    diagnostics.begin(model)
    return diagnostics
