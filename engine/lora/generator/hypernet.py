"""LoRA generators: prompt embeddings in, A and B for every target module out (seed 004, DnD).

Two architectures behind one interface (`LoRAGenerator.forward(cond)`, cond (batch, n, cond_dim)
→ {path: (A (batch, r, d_in), B (batch, d_out, r))}); both output anchor + a learned residual,
where the anchor (`set_anchor`, buffers saved with the weights) is the teachers' mean A, B.

- "mlp", the documented simpler design: mean-pool the prompt embeddings → MLP trunk → + a learned
  embedding per target module → one linear head per (module kind, d_out, d_in), shared across
  layers → the A and B residuals. The heads start small (output std ≈ 1e-3), so the first output
  is the anchor.
- "hyperconv": DnD's cascaded hyper-convolutional decoder (arXiv 2506.16406,
  `workspace/dnd/module/hyperconv.py`). The input is a grid (N prompts as channels, H, W); each
  layer normalises over (H, W), averages a W→H conv path, tanh of an H→W conv path and a bias
  ((·+·+bias)/3), then convolves over the channels, with a residual where the shape is unchanged.
  The last layer's grid (T, r, W) is the LoRA tokenization: each module's A (r × d_in) chunked
  along d_in into W-wide tokens, then Bᵀ (r × d_out) chunked the same way (last chunk padded).

Deliberate differences from DnD (sizes are for a 135M model, not DnD's 0.5B–7B):
- Inputs are pooled sentence embeddings, one per prompt (H = 1), not per-token states
  (L = 384…26624 in DnD); the prompt axis is resampled to 8 channels (adaptive average pool), so
  any number of prompts works (DnD fixes N per setting).
- No per-chunk z-scoring and no de-normalisation rows: tokens are raw A / Bᵀ values, and the
  output is a residual on the teachers' mean (DnD predicts the normalised tokens directly).
- Three layers, channels hidden // 8, kernel 1 on the first layer (a pointwise projection of the
  384-d embedding) and 3 after (DnD: 6–8 layers, kernel 9–11, up to 4508 channels; about
  1.1–1.8B parameters); the chunk width W is the largest divisor ≤ 128 of the gcd of all module
  sizes (96 on SmolLM2-135M: 600 tokens), not DnD's fixed 128/256/512.
- The last channel conv starts small (residual std ≈ 1e-4 at init on the demo), as the mlp heads
  do (≈ 1e-3): the first output is close to the anchor.
- An optional δ head (`predict_delta`, LLGBM's delta-guided loss): on the mlp trunk (LLGBM's shared
  projection) or, for hyperconv, a two-layer MLP of its own on the mean prompt embedding.

Sizes on the demo (SmolLM2-135M, rank 4 on q_proj and v_proj: 60 modules, 230,400 adapter
parameters; cond_dim 384, hidden 256, no δ head): mlp 2,154,496 parameters, hyperconv 592,480.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from engine.atomic import save_safetensors_atomic, write_json_atomic
from engine.errors import SubnetScopeError
from engine.lora.generator.arch import ARCHS, FORMAT, GeneratorConfig, TargetSpec

__all__ = [
    "ARCHS",
    "GeneratorConfig",
    "LoRAGenerator",
    "TargetSpec",
    "build_generator",
    "load_generator",
    "save_generator",
]

WEIGHTS = "generator.safetensors"
CONFIG = "generator.json"
PROMPT_CHANNELS = 8  # hyperconv: the prompt axis is resampled to this many channels
RESIDUAL_STD = 1e-3  # the output residual's scale at init: the first output ≈ the anchor
MAX_CHUNK = 128


def _small_init(layer: nn.Module, fan_in: int) -> None:
    """Weights with std RESIDUAL_STD / sqrt(fan_in), zero bias: unit-scale inputs give ≈ 1e-3."""
    nn.init.normal_(layer.weight, std=RESIDUAL_STD / math.sqrt(fan_in))
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


class LoRAGenerator(nn.Module, ABC):
    """Base of both architectures: anchors, the δ head, and the output dictionary."""

    config: GeneratorConfig

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        for i, t in enumerate(config.targets):
            self.register_buffer(f"anchor_a_{i}", torch.zeros(config.rank, t.d_in))
            self.register_buffer(f"anchor_b_{i}", torch.zeros(t.d_out, config.rank))

    @abstractmethod
    def residuals(self, cond: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per target (in config order): (A (batch, r, d_in), B (batch, d_out, r)) residuals."""

    def forward(self, cond: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """cond (batch, n_prompts, cond_dim) → {path: (A (batch, r, d_in), B (batch, d_out, r))}."""
        cond = self._check(cond)
        out = {}
        residuals = self.residuals(cond)
        for i, (t, (a, b)) in enumerate(zip(self.config.targets, residuals, strict=True)):
            out[t.path] = (
                getattr(self, f"anchor_a_{i}") + a,
                getattr(self, f"anchor_b_{i}") + b,
            )
        return out

    def predict_delta(self, cond: Tensor) -> Tensor:
        """The δ head's prediction of the adapter's delta activation, (batch, delta_dim)."""
        if self.config.delta_dim <= 0:
            raise SubnetScopeError("this generator has no δ head (delta_dim is 0)")
        return self.delta_head(self._delta_features(self._check(cond)))

    @abstractmethod
    def _delta_features(self, cond: Tensor) -> Tensor:
        """The features the δ head reads, (batch, features)."""

    @torch.no_grad()
    def set_anchor(self, factors: Mapping[str, tuple[Tensor, Tensor]]) -> None:
        """Output anchor + residual from now on; anchor = {path: (A (r, d_in), B (d_out, r))}."""
        missing = [t.path for t in self.config.targets if t.path not in factors]
        if missing:
            raise SubnetScopeError(f"the anchor has no factors for '{missing[0]}'")
        for i, t in enumerate(self.config.targets):
            a, b = factors[t.path]
            want_a, want_b = (self.config.rank, t.d_in), (t.d_out, self.config.rank)
            if tuple(a.shape) != want_a or tuple(b.shape) != want_b:
                raise SubnetScopeError(
                    f"the anchor for '{t.path}' has A {tuple(a.shape)} and B {tuple(b.shape)}; "
                    f"the generator makes A {want_a} and B {want_b}"
                )
            getattr(self, f"anchor_a_{i}").copy_(a.float())
            getattr(self, f"anchor_b_{i}").copy_(b.float())

    def anchor_factors(self) -> dict[str, tuple[Tensor, Tensor]]:
        """The anchor (the teachers' mean adapter): {path: (A (r, d_in), B (d_out, r))}."""
        return {
            t.path: (getattr(self, f"anchor_a_{i}").clone(), getattr(self, f"anchor_b_{i}").clone())
            for i, t in enumerate(self.config.targets)
        }

    def _check(self, cond: Tensor) -> Tensor:
        if cond.ndim != 3 or cond.shape[-1] != self.config.cond_dim or cond.shape[1] < 1:
            raise SubnetScopeError(
                f"the generator takes conditions (batch, prompts, {self.config.cond_dim}), got "
                f"{tuple(cond.shape)}"
            )
        return cond.float()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class MLPGenerator(LoRAGenerator):
    """Mean prompt embedding → trunk → per-module embedding → one head per (kind, shape)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        h, r = config.hidden, config.rank
        self.trunk = nn.Sequential(
            nn.Linear(config.cond_dim, h), nn.GELU(), nn.Linear(h, h), nn.LayerNorm(h)
        )  # (batch, cond_dim) → (batch, h)
        self.groups: dict[str, list[int]] = {}  # head key → indices of its targets
        for i, t in enumerate(config.targets):
            self.groups.setdefault(f"{t.kind}_{t.d_out}x{t.d_in}", []).append(i)
        self.embeddings = nn.ParameterDict(
            {key: nn.Parameter(torch.randn(len(idx), h)) for key, idx in self.groups.items()}
        )
        self.norm = nn.LayerNorm(h)
        self.heads = nn.ModuleDict()
        for key, idx in self.groups.items():
            t = config.targets[idx[0]]
            head = nn.Linear(h, r * t.d_in + t.d_out * r)
            _small_init(head, h)
            self.heads[key] = head
        if config.delta_dim:
            self.delta_head = nn.Sequential(
                nn.Linear(h, h), nn.GELU(), nn.Linear(h, config.delta_dim)
            )

    def residuals(self, cond: Tensor) -> list[tuple[Tensor, Tensor]]:
        z = self.trunk(cond.mean(dim=1))  # (batch, h)
        r = self.config.rank
        out: list[tuple[Tensor, Tensor] | None] = [None] * len(self.config.targets)
        for key, idx in self.groups.items():
            t = self.config.targets[idx[0]]
            h = self.norm(F.gelu(z[:, None, :] + self.embeddings[key][None]))  # (batch, n_t, h)
            flat = self.heads[key](h)  # (batch, n_t, r·d_in + d_out·r)
            a = flat[..., : r * t.d_in].unflatten(-1, (r, t.d_in))  # (batch, n_t, r, d_in)
            b = flat[..., r * t.d_in :].unflatten(-1, (t.d_out, r))  # (batch, n_t, d_out, r)
            for j, i in enumerate(idx):
                out[i] = (a[:, j], b[:, j])
        return out  # type: ignore[return-value]

    def _delta_features(self, cond: Tensor) -> Tensor:
        return self.trunk(cond.mean(dim=1))


class HyperConv3d(nn.Module):
    """DnD's hyper-convolution: (batch, N, H, W) → (batch, N, H', W'), N unchanged."""

    def __init__(self, shape_in: tuple[int, int, int], shape_out: tuple[int, int, int], k: int):
        super().__init__()
        _, h_in, w_in = shape_in
        _, h_out, w_out = shape_out
        self.norm = nn.LayerNorm([h_in, w_in])
        self.conv1w = nn.Conv2d(w_in, w_out, k, 1, "same", bias=False)
        self.conv1h = nn.Conv2d(h_in, h_out, k, 1, "same", bias=False)
        self.conv2h = nn.Conv2d(h_in, h_out, k, 1, "same", bias=False)
        self.conv2w = nn.Conv2d(w_in, w_out, k, 1, "same", bias=False)
        self.bias = nn.Parameter(torch.empty(h_out, w_out))
        nn.init.uniform_(self.bias, -1.0 / self.bias.numel(), 1.0 / self.bias.numel())

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)  # (batch, N, H, W)
        return (self._width_first(x) + self._height_first(x) + self.bias) / 3

    def _width_first(self, x: Tensor) -> Tensor:
        x = self.conv1w(x.transpose(1, 3)).transpose(1, 3)  # W → W' over (H, N)
        return self.conv1h(x.transpose(1, 2)).transpose(1, 2)  # H → H' over (N, W')

    def _height_first(self, x: Tensor) -> Tensor:
        x = self.conv2h(x.transpose(1, 2)).transpose(1, 2)  # H → H' over (N, W)
        return torch.tanh(self.conv2w(x.transpose(1, 3)).transpose(1, 3))  # W → W' over (H', N)


class HyperConvLayer(nn.Module):
    """DnD's layer: a hyper-convolution, then a conv over the channel (prompt/token) axis."""

    def __init__(self, shape_in: tuple[int, int, int], shape_out: tuple[int, int, int], k: int):
        super().__init__()
        self.hyper = HyperConv3d(shape_in, shape_out, k)
        self.channels = nn.Conv2d(shape_in[0], shape_out[0], k, 1, "same")

    def forward(self, x: Tensor) -> Tensor:
        return self.channels(self.hyper(x))


def chunk_width(targets: tuple[TargetSpec, ...]) -> int:
    """Token width W: the largest divisor ≤ 128 of the gcd of all sizes (no padding), if ≥ 16."""
    g = 0
    for t in targets:
        g = math.gcd(g, math.gcd(t.d_in, t.d_out))
    divisors = [d for d in range(16, MAX_CHUNK + 1) if g % d == 0]
    if divisors:
        return max(divisors)
    return min(64, max(max(t.d_in, t.d_out) for t in targets))


class HyperConvGenerator(LoRAGenerator):
    """DnD's cascaded hyper-convolutional decoder over pooled prompt embeddings (see the module)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        r, c = config.rank, max(8, config.hidden // 8)
        self.width = w = chunk_width(config.targets)
        # Per target: (first token, A tokens, Bᵀ tokens).
        self.tokens: list[tuple[int, int, int]] = []
        start = 0
        for t in config.targets:
            n_a, n_b = math.ceil(t.d_in / w), math.ceil(t.d_out / w)
            self.tokens.append((start, n_a, n_b))
            start += n_a + n_b
        self.n_tokens = start
        shapes = [(PROMPT_CHANNELS, 1, config.cond_dim), (c, r, w), (c, r, w), (start, r, w)]
        kernels = [1, 3, 3]
        self.layers = nn.ModuleList(
            HyperConvLayer(shapes[i], shapes[i + 1], kernels[i]) for i in range(len(kernels))
        )
        _small_init(self.layers[-1].channels, c * kernels[-1] ** 2)
        if config.delta_dim:
            h = config.hidden
            self.delta_head = nn.Sequential(
                nn.Linear(config.cond_dim, h), nn.GELU(), nn.Linear(h, config.delta_dim)
            )

    def residuals(self, cond: Tensor) -> list[tuple[Tensor, Tensor]]:
        # (batch, n, D) → (batch, 8, 1, D): the prompt axis resampled to a fixed channel count.
        x = F.adaptive_avg_pool1d(cond.transpose(1, 2), PROMPT_CHANNELS).transpose(1, 2)
        x = x[:, :, None, :]
        for layer in self.layers:
            y = layer(x)
            x = x + y if y.shape == x.shape else y
        # x: (batch, T, r, W) → per target A (batch, r, d_in), B (batch, d_out, r)
        out = []
        for t, (s, n_a, n_b) in zip(self.config.targets, self.tokens, strict=True):
            a = self._untokenize(x[:, s : s + n_a], t.d_in)
            bt = self._untokenize(x[:, s + n_a : s + n_a + n_b], t.d_out)
            out.append((a, bt.transpose(1, 2)))
        return out

    @staticmethod
    def _untokenize(tokens: Tensor, size: int) -> Tensor:
        """(batch, n, r, W) chunks → (batch, r, size): concatenated along W, padding dropped."""
        return tokens.permute(0, 2, 1, 3).flatten(2)[..., :size]

    def _delta_features(self, cond: Tensor) -> Tensor:
        return cond.mean(dim=1)


_ARCH_CLASSES: dict[str, type[LoRAGenerator]] = {
    "mlp": MLPGenerator,
    "hyperconv": HyperConvGenerator,
}


def build_generator(config: GeneratorConfig) -> LoRAGenerator:
    """A freshly initialised generator of `config.arch` (seed torch before for reproducibility)."""
    return _ARCH_CLASSES[config.arch](config)  # GeneratorConfig checked arch is one of ARCHS


def save_generator(gen: LoRAGenerator, folder: Path) -> None:
    """generator.safetensors (weights and anchors) + generator.json (format, config); no pickle."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}
    save_safetensors_atomic(folder / WEIGHTS, tensors)
    meta = {
        "format": FORMAT,
        "config": gen.config.to_json(),
        "parameters": gen.parameter_count(),
    }
    write_json_atomic(folder / CONFIG, meta)  # written last: a reader that sees it sees both


def load_generator(folder: Path) -> LoRAGenerator:
    """The generator saved in `folder` by save_generator, on the CPU, in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise SubnetScopeError(f"{folder} holds no saved generator ({CONFIG} + {WEIGHTS})")
    try:
        meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SubnetScopeError(f"cannot read {folder / CONFIG}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SubnetScopeError(f"{folder / CONFIG} is not a {FORMAT} file")
    gen = build_generator(GeneratorConfig.from_json(meta.get("config", {})))
    try:
        gen.load_state_dict(load_file(folder / WEIGHTS), strict=True)
    except (RuntimeError, OSError) as exc:
        raise SubnetScopeError(
            f"{folder / WEIGHTS} does not match its config: {str(exc).splitlines()[0]}"
        ) from None
    return gen.eval()
