"""Once per dashboard process: thread caps and quiet libraries."""

from __future__ import annotations

import os
from functools import cache


@cache
def configure_process() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from engine.runtime import limit_threads

    limit_threads()
