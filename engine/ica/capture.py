"""Capture MLP activations in one neuron space into [tokens, features].

Seed 001 hooks the second MLP projection (GPT-2 `mlp.c_proj`, Llama-style `mlp.down_proj`,
BERT-style `output.dense`). Space `mlp_neurons` records its input, the post-activation neuron
vector; space `mlp_out` records its output, the hidden-size vector seed 001's reference
(`compute_global_networks`, a forward hook on the MLP) captures. The chosen layers are concatenated
along the feature axis, so feature `offsets[i] + n` is channel n of `layers[i]`.
Tokens are written straight into the matrix, which lives on disk (a .npy memmap) when it would
pass the memory budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.errors import SubnetScopeError
from engine.ica.config import DEFAULT_MEMORY_BUDGET
from engine.ica.templates import DEFAULT_SPACE, check_space, space_widths
from engine.models import LoadedModel
from engine.models.devices import input_device
from engine.models.hooks import Hook, scoped_hooks


@dataclass
class Activations:
    """Activations per token in one neuron space, with where each token came from."""

    matrix: np.ndarray  # (tokens, features) float32; an np.memmap when spilled
    layers: tuple[int, ...]
    widths: tuple[int, ...]  # channels of each captured layer in `space`
    token_ids: np.ndarray  # (tokens,) int64
    text_index: np.ndarray  # (tokens,) int32: row of `texts`
    position: np.ndarray  # (tokens,) int32: token position inside its text
    texts: list[str]
    text_dataset: np.ndarray  # (texts,) int16: row of `datasets`
    datasets: list[str] = field(default_factory=list)
    spilled_to: Path | None = None
    space: str = DEFAULT_SPACE

    @property
    def offsets(self) -> np.ndarray:
        """First feature of each captured layer, plus the total as a last entry."""
        return np.concatenate([[0], np.cumsum(self.widths)]).astype(np.int64)

    @property
    def num_tokens(self) -> int:
        return int(self.matrix.shape[0])

    def neuron_of(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(layer, neuron) arrays for flat feature indices."""
        offsets = self.offsets
        slot = np.searchsorted(offsets, features, side="right") - 1
        return np.asarray(self.layers)[slot], features - offsets[slot]


def encode_texts(loaded: LoadedModel, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated, without special tokens (BOS activations are outliers that
    would dominate the components, and padding is not text)."""
    tokenizer = loaded.tokenizer
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    encoded = []
    for text in texts:
        ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        encoded.append([int(i) for i in ids if int(i) not in special])
    return encoded


def padded_batches(
    loaded: LoadedModel, encoded: Sequence[Sequence[int]], batch_size: int
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """(text indices, ids, attention mask) per batch of the non-empty texts, padded on the right;
    a token's row in the flattened `ids[attention.bool()]` follows text then position order."""
    pad_id = loaded.tokenizer.pad_token_id
    pad_id = 0 if pad_id is None else int(pad_id)
    order = [i for i in range(len(encoded)) if encoded[i]]
    for b in range(0, len(order), batch_size):
        batch = order[b : b + batch_size]
        longest = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(encoded[i])] = torch.tensor(list(encoded[i]))
            attention[row, : len(encoded[i])] = 1
        yield batch, ids, attention


def forward_tokens(
    loaded: LoadedModel,
    encoded: Sequence[Sequence[int]],
    layers: Sequence[int],
    on_rows: Callable[[int, int, torch.Tensor], None],
    *,
    batch_size: int = 8,
    on_batch: Callable[[int, int], None] | None = None,
    space: str = DEFAULT_SPACE,
) -> None:
    """Run the non-empty texts through the model in padded batches and call
    `on_rows(slot, first_row, rows)` with each chosen layer's down-projection input (`mlp_neurons`)
    or output (`mlp_out`) at the batch's real tokens (rows: tokens × channels, float32 on the CPU;
    `first_row`: the global row of the batch's first token, counting tokens text by text). The
    hooks are scoped (engine.models.hooks): other threads and sessions sharing the model are never
    seen, and a mask open around the call applies to what is captured."""
    arch = loaded.architecture
    state = {"row": 0, "keep": None}
    output = check_space(space) == "mlp_out"

    def make_hook(slot: int):
        def hook(module, args, out=None):
            seen = out if output else args[0]  # (batch, seq, channels), the layer's device
            rows = seen[state["keep"].to(seen.device)]  # (tokens, channels)
            on_rows(slot, state["row"], rows.float().cpu())  # float32 whatever the model's dtype
            return None

        return hook

    kind = "forward" if output else "pre"
    hooks: list[Hook] = [
        (arch.down_module(loaded.model, layer), kind, make_hook(slot))
        for slot, layer in enumerate(layers)
    ]
    total = sum(1 for ids in encoded if ids)
    done = 0
    device = input_device(loaded.model)
    with scoped_hooks(loaded, hooks, name="capture"):
        for batch, ids, attention in padded_batches(loaded, encoded, batch_size):
            state["keep"] = attention.bool().to(device)
            with torch.inference_mode():
                loaded.model(input_ids=ids.to(device), attention_mask=attention.to(device))
            state["row"] += int(attention.sum())
            done += len(batch)
            if on_batch is not None:
                on_batch(done, total)


def _allocate(
    rows: int, cols: int, budget: int, spill_dir: Path | None
) -> tuple[np.ndarray, Path | None]:
    nbytes = rows * cols * 4
    if nbytes <= budget:
        return np.empty((rows, cols), dtype=np.float32), None
    if spill_dir is None:
        raise SubnetScopeError(
            f"the activations would take {nbytes / 2**30:.1f} GiB, over the memory budget of "
            f"{budget / 2**30:.1f} GiB; give a folder to spill them to, or fewer samples or layers"
        )
    spill_dir.mkdir(parents=True, exist_ok=True)
    path = spill_dir / "activations.npy"
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, cols))
    return matrix, path


def capture_activations(
    loaded: LoadedModel,
    texts: Sequence[str],
    layers: Sequence[int],
    *,
    datasets: Sequence[str] | None = None,
    text_dataset: Sequence[int] | None = None,
    max_length: int = 128,
    batch_size: int = 8,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    spill_dir: Path | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    space: str = DEFAULT_SPACE,
) -> Activations:
    """Activations of every (non-special) token of `texts` at the chosen layers, in `space`."""
    arch = loaded.architecture
    layers = tuple(layers)
    if not layers:
        raise SubnetScopeError("no layers to capture")
    all_widths = space_widths(arch, space)
    widths = tuple(all_widths[layer] for layer in layers)
    offsets = np.concatenate([[0], np.cumsum(widths)])
    encoded = encode_texts(loaded, texts, max_length)
    lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        raise SubnetScopeError("the texts hold no tokens to capture")
    matrix, spilled = _allocate(total, int(offsets[-1]), memory_budget, spill_dir)
    text_index = np.repeat(np.arange(len(encoded), dtype=np.int32), lengths)
    position = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
    token_ids = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in encoded if ids])

    def store(slot: int, first_row: int, rows: torch.Tensor) -> None:
        lo, hi = int(offsets[slot]), int(offsets[slot + 1])
        matrix[first_row : first_row + rows.shape[0], lo:hi] = rows.numpy()

    forward_tokens(
        loaded, encoded, layers, store, batch_size=batch_size, on_batch=on_batch, space=space
    )
    if isinstance(matrix, np.memmap):
        matrix.flush()
    names = list(datasets or ["texts"])
    per_text = np.asarray(text_dataset if text_dataset is not None else [0] * len(texts))
    return Activations(
        matrix=matrix,
        layers=layers,
        widths=widths,
        token_ids=token_ids,
        text_index=text_index,
        position=position,
        texts=list(texts),
        text_dataset=per_text.astype(np.int16),
        datasets=names,
        spilled_to=spilled,
        space=space,
    )
