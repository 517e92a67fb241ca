"""Once per dashboard process: thread caps and quiet libraries."""

from __future__ import annotations

import logging
import os
from functools import cache

log = logging.getLogger(__name__)


@cache
def configure_process() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from engine.runtime import limit_threads

    limit_threads()
    if os.environ.get("SUBNETSCOPE_AUTO_DEMO", "1") != "0":
        start_demo_build()


def start_demo_build() -> None:
    """First launch: submit the jobs of missing demo parts in the background (see Runs)."""
    from engine.demo import build_demo
    from engine.errors import SubnetScopeError

    try:
        build_demo(retry_failed=False)
    except SubnetScopeError as exc:
        log.warning("demo build not started: %s", exc)
