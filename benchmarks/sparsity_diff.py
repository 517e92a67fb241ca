"""Sparsity diff of two ≥ 1 GB checkpoints: throughput against memcpy, memory against the
largest tensor, and both against loading the two models whole (seed 000's check_sparsity.py).
The diff's reference mode (the script's own numbers: bf16 cast, isclose) is timed against the
script's way of computing them, and their counts must agree.

Each diff runs in a fresh interpreter so its peak RSS is its own: the child resets the peak
(`/proc/self/clear_refs`), runs, and reports VmHWM minus the RSS it started from. Size:
`SUBNETSCOPE_BENCH_SPARSITY_GB` (default 1.0 GB per checkpoint, float32).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.runner import ROOT, Result, benchmark, compare, spread

SIZE_ENV = "SUBNETSCOPE_BENCH_SPARSITY_GB"
HIDDEN, FFN, VOCAB = 2048, 8192, 32768  # a 1B-class layer: 256 MB of float32 per block
SHARD_BYTES = 512 << 20
TOLERANCES = (1e-5, 1e-6)
COPY_BYTES = 512 << 20
TIMEOUT = 600


def layout(size_gb: float) -> dict[str, tuple[int, int]]:
    """Tensor shapes of a Llama-like checkpoint of at least `size_gb` GB (float32)."""
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    block = {
        **{f"self_attn.{p}_proj.weight": (HIDDEN, HIDDEN) for p in "qkvo"},
        "mlp.up_proj.weight": (FFN, HIDDEN),
        "mlp.gate_proj.weight": (FFN, HIDDEN),
        "mlp.down_proj.weight": (HIDDEN, FFN),
    }
    block_bytes = 4 * sum(math.prod(s) for s in block.values())
    layers = max(1, math.ceil((size_gb * 1e9 - 4 * VOCAB * HIDDEN) / block_bytes))
    for i in range(layers):
        shapes |= {f"model.layers.{i}.{name}": shape for name, shape in block.items()}
    return shapes


def write_pair(root: Path, shapes: dict[str, tuple[int, int]], seed: int = 0) -> dict:
    """Random float32 base and a tuned copy with a sparse update, as sharded folders."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    (root / "base").mkdir()
    (root / "tuned").mkdir()
    shards: list[list[str]] = [[]]
    size = 0
    for name, shape in shapes.items():
        nbytes = 4 * math.prod(shape)
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    weight_map = {}
    for i, names in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        base = {n: rng.random(shapes[n], dtype=np.float32) - np.float32(0.5) for n in names}
        save_file(base, root / "base" / file)
        for w in base.values():
            flat = w.reshape(-1)  # in place: the base is on disk already
            flat[int(rng.integers(20)) :: 20] += np.float32(1e-3)  # 5% visible updates
            flat[int(rng.integers(50)) :: 50] += np.float32(1e-7)  # 2% below every tolerance
        save_file(base, root / "tuned" / file)
        weight_map |= dict.fromkeys(names, file)
        del base
    index = {"metadata": {}, "weight_map": weight_map}
    for side in ("base", "tuned"):
        (root / side / "model.safetensors.index.json").write_text(json.dumps(index))
    return {"shards": len(shards)}


def _read_through(folder: Path) -> None:
    """Read every file once so both contenders start from the same warm page cache."""
    buf = bytearray(64 << 20)
    for f in sorted(folder.glob("*.safetensors")):
        with f.open("rb") as fh:
            while fh.readinto(buf):
                pass


def memcpy_gbps(repeats: int) -> list[float]:
    """numpy copy of a 512 MB array (both pre-touched): bytes copied per second."""
    src = np.ones(COPY_BYTES, dtype=np.uint8)
    dst = np.zeros(COPY_BYTES, dtype=np.uint8)
    np.copyto(dst, src)
    samples = []
    for _ in range(max(repeats, 3)):
        started = time.perf_counter()
        np.copyto(dst, src)
        samples.append(COPY_BYTES / (time.perf_counter() - started) / 1e9)
    return samples


def _script_counts(models: list[dict]) -> int:
    """check_sparsity.py's way, on state dicts already loaded whole: both cast to bf16 (its
    default --torch_dtype), Δ in bf16, isclose(Δ, 0, atol=1e-5) over all concatenated."""
    import torch

    deltas = [
        (models[1][name].to(torch.bfloat16) - w.to(torch.bfloat16)).view(-1)
        for name, w in models[0].items()
    ]
    everything = torch.cat(deltas)
    close = torch.isclose(everything, torch.zeros_like(everything), atol=TOLERANCES[0])
    return int(close.sum())


def _child(mode: str, base: str, tuned: str, scratch: str) -> dict:
    """Run one contender in this (fresh) process; report seconds and peak RSS growth."""
    if mode in ("stream", "reference"):
        from engine.cache import ArtifactStore
        from engine.sparsity import DiffConfig, diff
    else:
        from safetensors.torch import load_file
    _reset_peak()
    start_rss = _status_mb("VmRSS")
    started = time.perf_counter()
    if mode == "stream":
        # The cached path as the CLI runs it: masks stream to the store's folder.
        result = diff(
            base,
            tuned,
            DiffConfig(tolerances=TOLERANCES),
            store=ArtifactStore(Path(scratch) / "store"),
        )
        changed = result.summary["changed"]["1e-05"]["changed"]
    elif mode == "reference":
        result = diff(
            base,
            tuned,
            DiffConfig(tolerances=TOLERANCES, reference=True),
            store=ArtifactStore(Path(scratch) / "store-ref"),
        )
        ref = result.summary["reference"]
        changed = round(ref["close_fraction"]["1e-05"] * ref["numel"])  # close, as counted
    elif mode == "script":
        models = []
        for folder in (base, tuned):
            state = {}
            for f in sorted(Path(folder).glob("*.safetensors")):
                state |= load_file(f)
            models.append(state)
        changed = _script_counts(models)
    else:
        # Seed 000's check_sparsity.py: both state dicts whole, then |Δ| > τ per parameter.
        models = []
        for folder in (base, tuned):
            state: dict = {}
            for f in sorted(Path(folder).glob("*.safetensors")):
                state |= load_file(f)
            models.append(state)
        changed = 0
        for name, w in models[0].items():
            delta = (models[1][name].float() - w.float()).abs()
            for tau in TOLERANCES:
                count = int((delta > tau).sum())
                changed += count if tau == TOLERANCES[0] else 0
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_growth_mb": _status_mb("VmHWM") - start_rss,
        "start_rss_mb": start_rss,
        "changed_1e-5": changed,
    }


def _reset_peak() -> None:
    with contextlib.suppress(OSError):  # Linux ≥ 4.0: VmHWM := VmRSS
        Path("/proc/self/clear_refs").write_text("5")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def run_child(mode: str, base: Path, tuned: Path, scratch: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.sparsity_diff",
            mode,
            str(base),
            str(tuned),
            str(scratch),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} diff failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@benchmark("sparsity_diff", repeats=3)
def sparsity_diff(repeats: int) -> list[Result]:
    """Streamed diff GB/s against memcpy GB/s, its peak RSS growth against the largest tensor,
    and time and peak RSS against loading both checkpoints whole."""
    size_gb = float(os.environ.get(SIZE_ENV, "1.0"))
    shapes = layout(size_gb)
    model_bytes = 4 * sum(math.prod(s) for s in shapes.values())
    largest_mb = 4 * max(math.prod(s) for s in shapes.values()) / 2**20
    stream: list[dict] = []
    naive: list[dict] = []
    reference: list[dict] = []
    script: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="subnetscope-sparsity-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        facts = write_pair(root, shapes)
        write_seconds = time.perf_counter() - started
        _read_through(root / "base")
        _read_through(root / "tuned")
        copy = memcpy_gbps(repeats)
        for i in range(repeats):
            # Alternating, so both see the same load and page cache; a fresh store each time.
            scratch = root / f"scratch-{i}"
            scratch.mkdir()
            stream.append(run_child("stream", root / "base", root / "tuned", scratch))
            naive.append(run_child("naive", root / "base", root / "tuned", scratch))
            reference.append(run_child("reference", root / "base", root / "tuned", scratch))
            script.append(run_child("script", root / "base", root / "tuned", scratch))
        copy += memcpy_gbps(repeats)
    gbps = [2 * model_bytes / r["seconds"] / 1e9 for r in stream]
    agree = all(s["changed_1e-5"] == n["changed_1e-5"] for s, n in zip(stream, naive, strict=True))
    ref_agree = all(
        r["changed_1e-5"] == s["changed_1e-5"] for r, s in zip(reference, script, strict=True)
    )
    shared = {
        "checkpoint_gb": round(model_bytes / 1e9, 3),
        "tensors": len(shapes),
        "largest_tensor_mb": round(largest_mb, 1),
        "shards": facts["shards"],
        "write_seconds": round(write_seconds, 2),
        "changed_1e-5": stream[0]["changed_1e-5"],
        "counts_agree_with_whole_load": agree,
        "size_env": f"{SIZE_ENV}={size_gb}",
    }
    return [
        compare(
            "sparsity_diff.stream_gbps",
            "GB/s of both checkpoints read and diffed by engine.sparsity.diff (median)",
            gbps,
            "numpy memcpy of 512 MB (GB copied/s)",
            copy,
            unit="GB/s",
            details=shared,
        ),
        compare(
            "sparsity_diff.stream_peak_rss",
            "peak RSS growth of the streamed diff, MB (median)",
            [r["peak_growth_mb"] for r in stream],
            "size of the largest tensor, MB",
            [largest_mb],
            unit="MB",
            details=shared,
        ),
        compare(
            "sparsity_diff.vs_whole_load.seconds",
            "seconds of the streamed diff (all criteria, masks, row/col counts) (median)",
            [r["seconds"] for r in stream],
            "load both whole + |Δ| > τ counts (seed 000)",
            [r["seconds"] for r in naive],
            details=shared,
        ),
        compare(
            "sparsity_diff.vs_whole_load.peak_rss",
            "peak RSS growth of the streamed diff, MB (median)",
            [r["peak_growth_mb"] for r in stream],
            "peak RSS growth loading both whole (seed 000)",
            [r["peak_growth_mb"] for r in naive],
            unit="MB",
            details=shared | {"whole_load_peak_mb": spread([r["peak_growth_mb"] for r in naive])},
        ),
        compare(
            "sparsity_diff.reference.seconds",
            "seconds of the streamed diff with reference=True (its criteria + the script's "
            "numbers) (median)",
            [r["seconds"] for r in reference],
            "check_sparsity.py's way: load both whole, bf16 cast, isclose over the whole Δ",
            [r["seconds"] for r in script],
            details=shared
            | {
                "close_1e-5": reference[0]["changed_1e-5"],
                "close_counts_agree_with_script": ref_agree,
                "plain_stream_seconds": spread([r["seconds"] for r in stream]),
            },
        ),
        compare(
            "sparsity_diff.reference.peak_rss",
            "peak RSS growth of the streamed diff with reference=True, MB (median)",
            [r["peak_growth_mb"] for r in reference],
            "peak RSS growth of check_sparsity.py's way, MB",
            [r["peak_growth_mb"] for r in script],
            unit="MB",
            details=shared,
        ),
    ]


if __name__ == "__main__":
    # Child mode: python -m benchmarks.sparsity_diff stream|naive BASE TUNED SCRATCH
    print(json.dumps(_child(*sys.argv[1:5])))
