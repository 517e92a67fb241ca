"""The GPUs a job can see, told without importing torch: what it is given, and what it used.

SLURM hands a job the GPUs it was granted through `CUDA_VISIBLE_DEVICES` (and
`SLURM_JOB_GPUS`); a local process sees the machine's `/dev/nvidia<N>` devices unless
`CUDA_VISIBLE_DEVICES` narrows them. Models then go to CUDA by themselves
(engine.models.load_model picks it when torch sees one), so "using what it got" means: refuse to
start without the GPUs asked for, and record what was seen.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from engine.errors import SubnetScopeError

_NVIDIA = re.compile(r"nvidia\d+")


def visible_gpus(env: dict[str, str] | None = None, dev: Path = Path("/dev")) -> list[str]:
    """The GPUs this process may use: `CUDA_VISIBLE_DEVICES`'s entries when it is set (an empty
    value, `-1` or SLURM's `NoDevFiles` mean none), else the NVIDIA device files, else Apple's
    MPS device on an Apple-silicon Mac."""
    env = os.environ if env is None else env
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = [e.strip() for e in listed.split(",") if e.strip()]
        if not entries or entries[0] in ("-1", "NoDevFiles"):
            return []
        return entries
    try:
        found = sorted(
            (p.name for p in dev.iterdir() if _NVIDIA.fullmatch(p.name)),
            key=lambda n: int(n.removeprefix("nvidia")),
        )
    except OSError:
        found = []
    if found:
        return [n.removeprefix("nvidia") for n in found]
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return ["mps"]
    return []


def seen_devices(env: dict[str, str] | None = None) -> dict[str, Any]:
    """What a job records in its status: the visible GPUs and how it learnt them."""
    env = os.environ if env is None else env
    seen: dict[str, Any] = {"gpus": visible_gpus(env)}
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE"):
        if env.get(name) is not None:
            seen[name] = env[name]
    return seen


def used_devices() -> dict[str, Any]:
    """After the job ran: the CUDA devices torch counted, only if the job imported torch (a job
    that never loaded a model does not pay for importing it here)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    try:
        if not torch.cuda.is_initialized():
            return {"torch_used_cuda": False}
        count = torch.cuda.device_count()
        return {
            "torch_used_cuda": True,
            "torch_cuda_devices": [torch.cuda.get_device_name(i) for i in range(count)],
        }
    except (RuntimeError, AssertionError):  # a CPU-only build
        return {"torch_used_cuda": False}


def check_gpus(asked: int, backend: str, seen: list[str] | None = None) -> None:
    """One sentence when a job asked for GPUs it cannot have; `seen`: default, visible_gpus()."""
    if asked <= 0:
        return
    seen = visible_gpus() if seen is None else seen
    if len(seen) >= asked:
        return
    have = f"{len(seen)} ({', '.join(seen)})" if seen else "none"
    if backend == "local":
        raise SubnetScopeError(
            f"the job asks for {asked} GPU{'s' * (asked > 1)} but this machine shows {have}; "
            "submit it with --gpus 0 to run on the CPU, or to the slurm backend"
        )
    raise SubnetScopeError(
        f"the job asked SLURM for {asked} GPU{'s' * (asked > 1)} but sees {have} "
        "(CUDA_VISIBLE_DEVICES); it stops rather than run on the CPU"
    )
