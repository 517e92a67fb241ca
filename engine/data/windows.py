"""Cut tokenized texts into fixed-length windows for perplexity and attribution batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from engine.errors import SubnetScopeError


def token_windows(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    length: int,
    max_windows: int | None = None,
    seed: int = 0,
    add_bos: bool = True,
) -> torch.Tensor:
    """Non-overlapping windows of `length` token ids, shape (n_windows, length), dtype long.

    Texts are tokenized without special tokens and joined by EOS (when the tokenizer has one) into
    one stream. With `add_bos` and a BOS token, each window is BOS + `length - 1` stream tokens.
    With `max_windows`, that many windows are drawn with `seed` (kept in stream order).
    """
    if length < 2:
        raise ValueError(f"window length must be at least 2, got {length}")
    bos = tokenizer.bos_token_id if add_bos else None
    eos = tokenizer.eos_token_id
    # verbose=False: long documents are expected here; they are cut below, not fed whole.
    ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    stream: list[int] = []
    for i, text_ids in enumerate(ids):
        if i and eos is not None:
            stream.append(eos)
        stream.extend(text_ids)

    body = length - 1 if bos is not None else length
    n_windows = len(stream) // body
    if n_windows == 0:
        raise SubnetScopeError(
            f"the texts give {len(stream)} tokens, fewer than one window of {length} tokens"
        )
    windows = torch.tensor(stream[: n_windows * body], dtype=torch.long).view(n_windows, body)
    if max_windows is not None and max_windows < n_windows:
        keep = np.sort(np.random.default_rng(seed).permutation(n_windows)[:max_windows])
        windows = windows[torch.from_numpy(keep)]
    if bos is not None:
        windows = torch.cat([torch.full((len(windows), 1), bos, dtype=torch.long), windows], dim=1)
    return windows  # (n_windows, length)
