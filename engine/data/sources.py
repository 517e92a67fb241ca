"""Load texts from local .txt/.jsonl/.parquet files, the offline demo corpus or a hub dataset."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.areas import load_plugins
from engine.data.corpus import demo_code_corpus, demo_general_corpus
from engine.data.hub_recipes import HUB_RECIPES, hub_offline
from engine.errors import SubnetScopeError
from engine.runtime import hub_reachable

DEMO_GENERAL = "demo-general"
DEMO_CODE = "demo-code"
# Named text sets that ship with the project (no file, no network); higher layers add theirs
# with register_texts (the demo's prompt sets, engine/demo/registry.py).
BUILTIN_TEXTS: dict[str, Callable[[], list[str]]] = {
    DEMO_GENERAL: demo_general_corpus,
    DEMO_CODE: demo_code_corpus,
}
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")
# Auto-detected text fields, most specific first (covers pretraining, chat and QA datasets).
TEXT_FIELDS = (
    "text",
    "content",
    "prompt",
    "instruction",
    "question",
    "query",
    "input",
    "sentence",
    "document",
    "body",
    "context",
)


def register_texts(name: str, texts: Callable[[], list[str]]) -> None:
    """Add a named text set (a function returning the texts) that `load_texts` resolves."""
    BUILTIN_TEXTS[name] = texts


@dataclass(frozen=True)
class TextSource:
    """Where texts come from; `load()` returns them as a list of strings."""

    source: str = field(
        default=DEMO_GENERAL,
        metadata={"help": "A .txt/.jsonl/.parquet file, 'demo-general', or a hub dataset id."},
    )
    text_field: str | None = field(
        default=None,
        metadata={"help": "Field holding the text; empty picks text/content/prompt/... itself."},
    )
    split: str = field(default="train", metadata={"help": "Dataset split (hub datasets only)."})
    limit: int | None = field(default=None, metadata={"help": "Keep at most this many texts."})
    seed: int | None = field(
        default=None,
        metadata={"help": "With a limit: draw that many at random with this seed, not the first."},
    )

    def load(self) -> list[str]:
        return load_texts(
            self.source,
            text_field=self.text_field,
            split=self.split,
            limit=self.limit,
            seed=self.seed,
        )


def sample_texts(texts: Sequence[str], n: int, seed: int) -> list[str]:
    """`n` texts drawn without replacement, the same for the same seed (all of them if fewer)."""
    if n < 0:
        raise ValueError(f"cannot sample {n} texts")
    order = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in order]


def _resolve_field(
    columns: Sequence[str], first: Mapping[str, Any], text_field: str | None, source: str
) -> str:
    """`text_field` if the source has it; else the first known text field, else any string field."""
    if text_field is not None:
        if text_field not in columns:
            raise SubnetScopeError(
                f"'{source}' has no field '{text_field}' (fields: {', '.join(columns)})"
            )
        return text_field
    for name in (*[f for f in TEXT_FIELDS if f in columns], *columns):
        if isinstance(first.get(name), str):
            return name
    raise SubnetScopeError(f"'{source}' has no text field (fields: {', '.join(columns) or 'none'})")


def _read_txt(path: Path) -> list[str]:
    return re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))


def read_jsonl_objects(path: Path) -> list[dict]:
    """The JSON objects of a .jsonl file, one per non-blank line (one clear error otherwise)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SubnetScopeError(f"'{path}' line {number} is not valid JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise SubnetScopeError(f"'{path}' line {number} is not a JSON object")
            rows.append(row)
    return rows


def _read_jsonl(path: Path, text_field: str | None) -> list[Any]:
    rows = read_jsonl_objects(path)
    if not rows:
        return []
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text_field = _resolve_field(columns, rows[0], text_field, str(path))
    return [row.get(text_field) for row in rows]


def _read_parquet(path: Path, text_field: str | None) -> list[Any]:
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt or non-parquet file
        raise SubnetScopeError(f"cannot read '{path}' as parquet ({exc})") from exc
    if table.empty:
        return []
    columns = [str(c) for c in table.columns]
    text_field = _resolve_field(columns, table.iloc[0].to_dict(), text_field, str(path))
    return table[text_field].tolist()


def _read_hub(
    name: str, text_field: str | None, split: str, limit: int | None, seed: int | None
) -> list[Any]:
    import datasets

    if not hub_offline() and not hub_reachable():
        # Without this, datasets retries a closed network for ~30 s before failing.
        raise SubnetScopeError(
            f"cannot load dataset '{name}': it is not a local file and the Hugging Face hub is "
            "unreachable (set HF_HUB_OFFLINE=1 to use a copy in the local hub cache)"
        )
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as exc:  # the hub client raises many types: offline, 404, gated, bad split
        if hub_offline():
            why = "not in the hub cache, and the Hugging Face hub is offline (HF_HUB_OFFLINE)"
        else:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            why = f"the Hugging Face hub is unreachable or has no such dataset ({detail})"
        raise SubnetScopeError(
            f"cannot load dataset '{name}': it is not a local file and {why}"
        ) from exc
    if seed is not None:
        dataset = dataset.shuffle(seed=seed)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if len(dataset) == 0:
        return []
    text_field = _resolve_field(list(dataset.column_names), dataset[0], text_field, name)
    return list(dataset[text_field])


def _looks_like_path(source: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with slashes is meant as a local path.
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def load_texts(
    source: str,
    *,
    text_field: str | None = None,
    split: str = "train",
    limit: int | None = None,
    seed: int | None = None,
) -> list[str]:
    """Non-empty texts from `source`; with `limit`, the first `limit` or, given `seed`, a sample.

    `source` is a .txt file (documents separated by blank lines), a .jsonl or .parquet file (one
    text per row, from `text_field` or an auto-detected field), a built-in set (BUILTIN_TEXTS:
    'demo-general' prose, 'demo-code' Python source, the pruning demo's prompts), one of seed
    002's hub sets ('c4', 'rtp-toxic', 'wikitext2-test'), or a hub dataset id.
    """
    source = source.strip()
    if not source:
        raise SubnetScopeError("no text source given: name a file, 'demo-general' or a dataset id")
    path = Path(source).expanduser()
    from_hub = False
    load_plugins()
    if source in BUILTIN_TEXTS:
        raw: list[Any] = BUILTIN_TEXTS[source]()
    elif source in HUB_RECIPES:
        raw = HUB_RECIPES[source](limit, seed)
        from_hub = True
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".txt":
            raw = _read_txt(path)
        elif suffix == ".jsonl":
            raw = _read_jsonl(path, text_field)
        elif suffix == ".parquet":
            raw = _read_parquet(path, text_field)
        else:
            raise SubnetScopeError(
                f"cannot read '{source}': unsupported file type '{suffix or '(none)'}' "
                f"(use {', '.join(LOCAL_SUFFIXES)})"
            )
    elif path.is_dir():
        raise SubnetScopeError(
            f"'{source}' is a folder; name a {', '.join(LOCAL_SUFFIXES)} file inside it"
        )
    elif path.suffix.lower() in LOCAL_SUFFIXES or _looks_like_path(source):
        raise SubnetScopeError(f"file not found: '{source}'")
    else:
        raw = _read_hub(source, text_field, split, limit, seed)
        from_hub = True

    texts = [t.strip() for t in raw if isinstance(t, str) and t.strip()]
    if not texts:
        raise SubnetScopeError(f"'{source}' contains no text")
    if limit is not None and not from_hub:  # the hub path already shuffled and limited
        texts = sample_texts(texts, limit, seed) if seed is not None else texts[:limit]
    return texts
