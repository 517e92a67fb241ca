"""Process-wide runtime settings: thread caps and whether the model hub can be reached."""

from __future__ import annotations

import os
import socket
from functools import lru_cache


def limit_threads(n: int | None = None) -> int:
    """Cap torch and BLAS threads. On shared cores, oversubscribed BLAS runs 8–11× slower.

    Default: `$SUBNETSCOPE_THREADS`, else one core fewer than the machine has (at least one).
    """
    import torch
    from threadpoolctl import threadpool_limits

    if n is None:
        n = int(os.environ.get("SUBNETSCOPE_THREADS", 0)) or max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(n)
    threadpool_limits(limits=n)
    return n


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 1.5) -> bool:
    """True when the Hugging Face hub answers a TCP connect and offline mode is not set."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False
