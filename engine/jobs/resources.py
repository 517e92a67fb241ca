"""What a running job uses: resident memory, CPU time and GPU memory, sampled into its events."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESOURCES_S = 5.0  # seconds between two samples; SUBNETSCOPE_RESOURCES_S overrides it
GB = 1e9


def every_s() -> float:
    """The sampling interval: `$SUBNETSCOPE_RESOURCES_S` when it is a positive number."""
    try:
        seconds = float(os.environ.get("SUBNETSCOPE_RESOURCES_S", RESOURCES_S))
    except ValueError:
        return RESOURCES_S
    return seconds if seconds > 0 else RESOURCES_S


def _proc_status(path: Path = Path("/proc/self/status")) -> dict[str, float]:
    """VmRSS and VmHWM of this process in GB; empty where there is no /proc (macOS)."""
    found: dict[str, float] = {}
    try:
        for line in path.read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                found[line[:5]] = int(line.split()[1]) * 1024 / GB  # kB
    except (OSError, ValueError, IndexError):
        pass
    return found


def peak_rss_gb() -> float | None:
    """This process's peak resident memory: what its kind should declare. VmHWM, not
    getrusage's ru_maxrss, which Linux carries over execve from the launching process (a job
    started by a 3 GB dashboard or job would report 3 GB)."""
    peak = _proc_status().get("VmHWM")
    return None if peak is None else round(peak, 3)


def _gpu() -> dict[str, float]:
    """CUDA memory torch's allocator holds, summed over the devices, only where the job already
    imported torch and initialized CUDA (a sample never imports torch or starts CUDA itself)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    try:
        if not torch.cuda.is_initialized():
            return {}
        devices = range(torch.cuda.device_count())
        return {
            "gpu_gb": sum(torch.cuda.memory_allocated(i) for i in devices) / GB,
            "gpu_peak_gb": sum(torch.cuda.max_memory_allocated(i) for i in devices) / GB,
            "gpu_reserved_peak_gb": sum(torch.cuda.max_memory_reserved(i) for i in devices) / GB,
        }
    except (RuntimeError, AssertionError):  # a CPU-only build, or a device gone bad
        return {}


def sample(started: float | None = None) -> dict[str, Any]:
    """One reading of this process (no event type, no time stamp):

    - `rss_gb`, `peak_rss_gb`: resident memory now (VmRSS) and its peak (VmHWM), this process
      only (None without /proc);
    - `cpu_s` (= `cpu_user_s` + `cpu_system_s`): CPU time of all its threads and of the child
      processes it has waited for;
    - `elapsed_s`: wall seconds since `started` (a `time.monotonic()` reading), when given;
    - `gpu_gb`, `gpu_peak_gb`, `gpu_reserved_peak_gb`: torch's CUDA allocator now, its peak
      (`max_memory_allocated`) and the peak it reserved from the driver, summed over the devices;
      only where the job uses CUDA through torch.
    """
    memory = _proc_status()
    times = os.times()
    user, system = times.user + times.children_user, times.system + times.children_system
    reading: dict[str, Any] = {
        "rss_gb": None if "VmRSS" not in memory else round(memory["VmRSS"], 4),
        "peak_rss_gb": None if "VmHWM" not in memory else round(memory["VmHWM"], 4),
        "cpu_s": round(user + system, 2),
        "cpu_user_s": round(user, 2),
        "cpu_system_s": round(system, 2),
    }
    if started is not None:
        reading["elapsed_s"] = round(time.monotonic() - started, 2)
    reading |= {name: round(value, 4) for name, value in _gpu().items()}
    return reading


class ResourceSampler:
    """A daemon thread that hands `report` a `sample()` every `every` seconds (the first at once)
    and a last one, marked `final`, when stopped."""

    def __init__(self, report: Callable[[dict[str, Any]], None], every: float | None = None):
        self.report, self.every = report, every_s() if every is None else every
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resources", daemon=True)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):  # a full disk: the job matters more
                self.report(sample(self.started))
            if self._stop.wait(self.every):
                return

    def stop(self) -> dict[str, Any]:
        """Stop the thread and report (and return) the final sample."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        final = {**sample(self.started), "final": True}
        with contextlib.suppress(OSError):
            self.report(final)
        return final
