"""Sparsity diff of two bf16 checkpoints of real tensor sizes: GB/s against the read bandwidth of
the same files measured in the same run, peak anonymous RSS against the largest tensor, the
mapped diff (compiled kernel, engine.sparsity.kernel) against the mapped numpy pipeline and the
block-copying path it replaced, and against loading the two checkpoints whole (seed 000's
check_sparsity.py, also with `reference=True`).

Read bandwidth: a zero-copy mmap pass over the same files that sums every 8-byte word in 4 MiB
chunks, page cache warm, as the diff reads them (memcpy is context). Each diff runs in a fresh
interpreter so its memory is its own: a thread samples RssAnon every 2 ms (page cache and mapped
file pages are not anonymous memory), and VmHWM growth is reported beside it. Size:
`SUBNETSCOPE_BENCH_SPARSITY_GB` (default 1.0 GB per checkpoint). `read_bandwidth_gbs` and
`diff_checkpoints_timed` are for other benchmarks (benchmarks/scale.py) to reuse.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runner import Result, benchmark, compare, json_child, spread

SIZE_ENV = "SUBNETSCOPE_BENCH_SPARSITY_GB"
HIDDEN, FFN, VOCAB = 2048, 8192, 32768  # a 1B-class model: 32k×2k embedding, 8k×2k MLP
SHARD_BYTES = 256 << 20  # the whole-load contenders read one shard per side
TOLERANCES = (1e-5, 1e-6)
CHANGED = 0.05  # share of weights the planted update changes (RL-like sparsity)
CHUNK = 4 << 20
POOL = 32 << 20  # elements of random bf16 bits the tensors are cut from
COPY_BYTES = 512 << 20
TIMEOUT = 600


def layout(size_gb: float) -> dict[str, tuple[int, int]]:
    """Tensor shapes of a Llama-like bf16 checkpoint of at least `size_gb` GB."""
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "lm_head.weight": (VOCAB, HIDDEN)}
    block = {
        **{f"self_attn.{p}_proj.weight": (HIDDEN, HIDDEN) for p in "qkvo"},
        "mlp.up_proj.weight": (FFN, HIDDEN),
        "mlp.gate_proj.weight": (FFN, HIDDEN),
        "mlp.down_proj.weight": (HIDDEN, FFN),
        "input_layernorm.weight": (HIDDEN,),
    }
    block_bytes = 2 * sum(math.prod(s) for s in block.values())
    layers = max(1, math.ceil((size_gb * 1e9 - 2 * 2 * VOCAB * HIDDEN) / block_bytes))
    for i in range(layers):
        shapes |= {f"model.layers.{i}.{name}": shape for name, shape in block.items()}
    return shapes


def _write(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A safetensors file of bf16 tensors given as their uint16 bits (numpy has no bf16)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, bits in tensors.items():
        header[name] = {
            "dtype": "BF16",
            "shape": list(bits.shape),
            "data_offsets": [offset, offset + bits.nbytes],
        }
        offset += bits.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for bits in tensors.values():
            f.write(bits.data)


def _cut(pool: np.ndarray, shape: tuple[int, ...], offset: int) -> np.ndarray:
    """A tensor of `shape` filled with `pool` read cyclically from `offset`."""
    out = np.empty(math.prod(shape), pool.dtype)
    pos = 0
    while pos < out.size:
        take = min(out.size - pos, pool.size - offset)
        out[pos : pos + take] = pool[offset : offset + take]
        pos, offset = pos + take, 0
    return out.reshape(shape)


def write_pair(root: Path, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, Any]:
    """Random bf16 base and a tuned copy with a sparse update (CHANGED of the weights, half of
    them by one ulp), as sharded folders with an index."""
    rng = np.random.default_rng(seed)
    for side in ("base", "tuned"):
        (root / side).mkdir()
    shards: list[list[str]] = [[]]
    size = 0
    for name, shape in shapes.items():
        nbytes = 2 * math.prod(shape)
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    # Finite bf16 values of every magnitude below 2: bit 14 (the exponent's top bit) clear.
    # Tensors repeat a 64 MB random pool from random offsets: generating 1 GB costs 10× more.
    pool = rng.integers(0, 1 << 16, POOL, dtype=np.uint16) & 0xBFFF
    weight_map = {}
    for i, names in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        base = {n: _cut(pool, shapes[n], int(rng.integers(POOL))) for n in names}
        _write(root / "base" / file, base)
        for bits in base.values():
            flat = bits.reshape(-1)  # in place: the base is on disk already
            flat[int(rng.integers(20)) :: int(2 / CHANGED)] ^= 1  # one ulp
            flat[int(rng.integers(20)) + 1 :: int(2 / CHANGED)] ^= 0x10  # sixteen ulps
        _write(root / "tuned" / file, base)
        weight_map |= dict.fromkeys(names, file)
        del base
    index = {"metadata": {}, "weight_map": weight_map}
    for side in ("base", "tuned"):
        (root / side / "model.safetensors.index.json").write_text(json.dumps(index))
    return {"shards": len(shards)}


def checkpoint_files(path: Path) -> list[Path]:
    """A checkpoint's safetensors files: the file itself, or a folder's."""
    return [path] if path.is_file() else sorted(path.glob("*.safetensors"))


def scratch_root(need_bytes: int) -> str | None:
    """The shared-memory folder when it has room (writing 2 GB to this machine's disk takes
    ~16 s, and the page cache holds the files either way), else the default temp folder."""
    shm = Path("/dev/shm")  # noqa: S108 (the parent of a mkdtemp folder, not a file name)
    if shm.is_dir() and shutil.disk_usage(shm).free > 3 * need_bytes:
        return str(shm)
    return None


def read_bandwidth_gbs(paths: list[Path], chunk: int = CHUNK) -> float:
    """GB/s of a zero-copy mmap pass that sums every 8-byte word of `paths` in `chunk`-byte
    pieces (page cache as it is: warm it first for a memory bandwidth)."""
    total = 0
    started = time.perf_counter()
    for path in paths:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            words = np.frombuffer(m, np.uint64, len(m) // 8)
            for start in range(0, words.size, chunk // 8):
                words[start : start + chunk // 8].sum()
            total += len(m)
            del words
    return total / (time.perf_counter() - started) / 1e9


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


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak() -> None:
    with contextlib.suppress(OSError):  # Linux ≥ 4.0: VmHWM := VmRSS
        Path("/proc/self/clear_refs").write_text("5")


class AnonPeak:
    """The highest RssAnon seen while the block runs, sampled every `every` seconds."""

    def __init__(self, every: float = 0.002) -> None:
        self.every = every
        self.start_kb = self.peak_kb = _status_kb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_kb = max(self.peak_kb, _status_kb("RssAnon"))

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _status_kb("RssAnon"))

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.start_kb) / 1024


def diff_checkpoints_timed(
    base: Path,
    tuned: Path,
    out_dir: Path,
    *,
    mapped: bool = True,
    workers: int | None = None,
    kernel: bool = True,
) -> dict[str, Any]:
    """Diff two checkpoints as the CLI does (masks streamed to `out_dir`) in this process:
    seconds, GB/s of both checkpoints, anonymous RSS growth and VmHWM growth (MB), and the
    changed count at the first tolerance. `workers` overrides the mapped path's threads,
    `kernel=False` takes its numpy pipeline. The kernel's JIT is loaded (numba's cache) or
    compiled before the clock starts, its seconds reported as `jit_seconds`. Run it in a fresh
    process for a clean peak."""
    from engine.sparsity import DiffConfig, compute_diff, stream
    from engine.sparsity.resolve import open_source

    if workers is not None:
        stream.WORKERS = workers
    stream.KERNEL = kernel
    jit_seconds = 0.0
    if kernel and mapped:
        from engine.sparsity import kernel as chunk_kernel

        jit_seconds = chunk_kernel.warm()
    warm_seconds = _warm_diff(out_dir, mapped, base)

    sources = open_source(base), open_source(tuned)
    nbytes = sum(f.stat().st_size for side in (base, tuned) for f in checkpoint_files(side))
    _reset_peak()
    start_rss = _status_kb("VmRSS")
    with AnonPeak() as anon:
        started = time.perf_counter()
        result = compute_diff(
            *sources, DiffConfig(tolerances=TOLERANCES), out_dir=out_dir, mapped=mapped
        )
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "gbps": nbytes / seconds / 1e9,
        "anon_growth_mb": anon.growth_mb,
        "peak_growth_mb": (_status_kb("VmHWM") - start_rss) / 1024,
        "changed_1e-5": result.summary["changed"][f"{TOLERANCES[0]:g}"]["changed"],
        "jit_seconds": jit_seconds,
        "warm_seconds": warm_seconds,
    }


def _warm_diff(out_dir: Path, mapped: bool, base: Path) -> float:
    """Before the clock starts: one diff of two tiny bf16 files and the base's tensor layout. The
    modules a first diff imports (torch through the readers; the model family's modeling code,
    which the layout builds on the meta device: 2-3 s for Qwen2) are a once-per-process cost,
    reported as `warm_seconds`, not part of the diff's throughput."""
    from engine.sparsity import DiffConfig, compute_diff
    from engine.sparsity.layout import layout_for
    from engine.sparsity.resolve import open_source

    started = time.perf_counter()
    layout_for(base if (base / "config.json").is_file() else None)
    root = out_dir / "warm"
    for side, value in (("base", 0), ("tuned", 1)):
        bits = np.full((8, 8), 0x3F80 + value, np.uint16)
        _write_safetensors(root / side / "model.safetensors", {"w": bits})
    (root / "out").mkdir()
    compute_diff(
        open_source(root / "base"),
        open_source(root / "tuned"),
        DiffConfig(tolerances=TOLERANCES),
        out_dir=root / "out",
        mapped=mapped,
    )
    shutil.rmtree(root, ignore_errors=True)
    return time.perf_counter() - started


def _write_safetensors(path: Path, tensors: dict[str, Any]) -> None:
    """A bf16 safetensors file from uint16 bit arrays (safetensors' numpy API has no bf16)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header, offset, blobs = {}, 0, []
    for name, bits in tensors.items():
        blob = bits.tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(bits.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def mapped_workers() -> int:
    from engine.sparsity import stream

    return stream.WORKERS


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


def _load_both(base: str, tuned: str) -> list[dict]:
    from safetensors.torch import load_file

    models = []
    for folder in (base, tuned):
        state: dict = {}
        for f in checkpoint_files(Path(folder)):
            state |= load_file(f)
        models.append(state)
    return models


def _child(mode: str, base: str, tuned: str, scratch: str) -> dict:
    """Run one contender in this (fresh) process."""
    if mode in ("mapped", "mapped1", "numpy", "blocks"):
        return diff_checkpoints_timed(
            Path(base),
            Path(tuned),
            Path(scratch) / mode,
            mapped=mode != "blocks",
            workers=1 if mode == "mapped1" else None,
            kernel=mode != "numpy",
        )
    if mode == "reference":
        from engine.sparsity import DiffConfig, compute_diff
        from engine.sparsity.resolve import open_source

        sources = open_source(base), open_source(tuned)
    _reset_peak()
    start_rss = _status_kb("VmRSS")
    with AnonPeak() as anon:
        started = time.perf_counter()
        if mode == "reference":
            config = DiffConfig(tolerances=TOLERANCES, reference=True)
            ref = compute_diff(*sources, config, out_dir=Path(scratch) / mode).summary["reference"]
            changed = round(ref["close_fraction"]["1e-05"] * ref["numel"])  # close, as counted
        elif mode == "script":
            changed = _script_counts(_load_both(base, tuned))
        else:  # naive: seed 000's check_sparsity.py, both whole, then |Δ| > τ per parameter
            models = _load_both(base, tuned)
            changed = 0
            for name, w in models[0].items():
                changed += int(((models[1][name].float() - w.float()).abs() > TOLERANCES[0]).sum())
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "anon_growth_mb": anon.growth_mb,
        "peak_growth_mb": (_status_kb("VmHWM") - start_rss) / 1024,
        "changed_1e-5": changed,
    }


def run_child(mode: str, base: Path, tuned: Path, scratch: Path) -> dict:
    (scratch / mode).mkdir(parents=True, exist_ok=True)
    argv = ["benchmarks.sparsity_diff", mode, str(base), str(tuned), str(scratch)]
    return json_child(argv, f"{mode} diff", TIMEOUT)


def warm_page_cache(paths: list[Path]) -> None:
    """Read every file once so every contender starts from the same warm page cache."""
    buf = bytearray(64 << 20)
    for f in paths:
        with f.open("rb") as fh:
            while fh.readinto(buf):
                pass


@benchmark("sparsity_diff", repeats=3)
def sparsity_diff(repeats: int) -> list[Result]:
    """The mapped diff's GB/s against the mmap read bandwidth of the same files, its peak
    anonymous RSS against the largest tensor, and both against the block-copying path and
    against loading both checkpoints whole."""
    size_gb = float(os.environ.get(SIZE_ENV, "1.0"))
    shapes = layout(size_gb)
    largest_mb = 2 * max(math.prod(s) for s in shapes.values()) / 2**20
    mapped: list[dict] = []
    mapped1: list[dict] = []
    numpy_path: list[dict] = []
    blocks: list[dict] = []
    read: list[float] = []
    need = int(2 * size_gb * 1e9)
    with tempfile.TemporaryDirectory(
        prefix="subnetscope-sparsity-bench-", dir=scratch_root(need)
    ) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        facts = write_pair(root, shapes)
        write_seconds = time.perf_counter() - started
        files = checkpoint_files(root / "base") + checkpoint_files(root / "tuned")
        model_bytes = sum(f.stat().st_size for f in files) / 2
        shard_bytes = files[0].stat().st_size
        warm_page_cache(files)
        copy = memcpy_gbps(repeats)
        for i in range(repeats):
            # Alternating, so each sees the same load and page cache.
            scratch = root / f"scratch-{i}"
            read.append(read_bandwidth_gbs(files))
            mapped.append(run_child("mapped", root / "base", root / "tuned", scratch))
            mapped1.append(run_child("mapped1", root / "base", root / "tuned", scratch))
            numpy_path.append(run_child("numpy", root / "base", root / "tuned", scratch))
            blocks.append(run_child("blocks", root / "base", root / "tuned", scratch))
        read.append(read_bandwidth_gbs(files))
        # Loading both whole takes ~4× the pair in RAM (check_sparsity.py's way: 8 GB for two
        # 1 GB checkpoints): these contenders run once, on the first shard of each side.
        scratch = root / "scratch-whole"
        shard = (checkpoint_files(root / "base")[0], checkpoint_files(root / "tuned")[0])
        whole = {
            mode: run_child(mode, *shard, scratch)
            for mode in ("mapped", "naive", "reference", "script")
        }
        copy += memcpy_gbps(repeats)
    agree = all(
        m["changed_1e-5"] == b["changed_1e-5"] == n["changed_1e-5"]
        for m, b, n in zip(mapped, blocks, numpy_path, strict=True)
    )
    naive, reference, script = whole["naive"], whole["reference"], whole["script"]
    shard_facts = {
        "shard_gb": round(shard_bytes / 1e9, 3),
        "counts_agree_with_whole_load": whole["mapped"]["changed_1e-5"] == naive["changed_1e-5"],
    }
    shared = {
        "checkpoint_gb": round(model_bytes / 1e9, 3),
        "dtype": "bf16",
        "tensors": len(shapes),
        "largest_tensor_mb": round(largest_mb, 1),
        "shards": facts["shards"],
        "changed_share": CHANGED,
        "write_seconds": round(write_seconds, 2),
        "changed_1e-5": mapped[0]["changed_1e-5"],
        "counts_agree_kernel_numpy_blocks": agree,
        "jit_seconds": spread([r["jit_seconds"] for r in mapped]),
        "memcpy_gbps": spread(copy),
        "size_env": f"{SIZE_ENV}={size_gb}",
    }

    def ratios(runs: list[dict]) -> dict[str, Any]:
        # Each diff against the mean of the read passes just before and after it.
        return spread([2 * r["gbps"] / (read[i] + read[i + 1]) for i, r in enumerate(runs)])

    return [
        compare(
            "sparsity_diff.mapped_vs_read_gbps",
            "GB/s of both checkpoints diffed by engine.sparsity (mapped, compiled kernel, all "
            "criteria, masks, row/col counts) (median)",
            [r["gbps"] for r in mapped],
            "mmap pass summing every word of the same files, 4 MiB chunks (GB/s)",
            read,
            unit="GB/s",
            details=shared
            | {
                "target": "≥ 0.5× the read bandwidth (issue 19)",
                "kernel_vs_read": ratios(mapped),
                "kernel_one_thread_vs_read": ratios(mapped1),
                "numpy_vs_read": ratios(numpy_path),
                "blocks_vs_read": ratios(blocks),
                "read_gbps": spread(read),
            },
        ),
        compare(
            "sparsity_diff.kernel_vs_numpy_gbps",
            f"GB/s of the mapped diff through the compiled kernel, {mapped_workers()} threads "
            "(median)",
            [r["gbps"] for r in mapped],
            "the same through the mapped numpy pipeline (stream.KERNEL = False)",
            [r["gbps"] for r in numpy_path],
            unit="GB/s",
            details=shared
            | {"numpy_anon_growth_mb": spread([r["anon_growth_mb"] for r in numpy_path])},
        ),
        compare(
            "sparsity_diff.mapped_threads",
            f"GB/s of the mapped diff on {mapped_workers()} threads (median)",
            [r["gbps"] for r in mapped],
            "the same on one thread",
            [r["gbps"] for r in mapped1],
            unit="GB/s",
            details=shared
            | {
                "one_thread_vs_read": spread(
                    [r["gbps"] / b for r, b in zip(mapped1, read, strict=False)]
                )
            },
        ),
        compare(
            "sparsity_diff.mapped_anon_rss",
            "peak anonymous RSS growth of the mapped diff, MB (median)",
            [r["anon_growth_mb"] for r in mapped],
            "size of the largest tensor, MB",
            [largest_mb],
            unit="MB",
            details=shared | {"vmhwm_growth_mb": spread([r["peak_growth_mb"] for r in mapped])},
        ),
        compare(
            "sparsity_diff.mapped_vs_blocks.seconds",
            "seconds of the mapped diff (median)",
            [r["seconds"] for r in mapped],
            "the block-copying path it replaced (readinto + torch kernels, mapped=False)",
            [r["seconds"] for r in blocks],
            details=shared
            | {
                "blocks_gbps": spread([r["gbps"] for r in blocks]),
                "blocks_anon_growth_mb": spread([r["anon_growth_mb"] for r in blocks]),
            },
        ),
        compare(
            "sparsity_diff.vs_whole_load.seconds",
            "seconds of the mapped diff of the first shards (all criteria, masks, row/col counts)",
            [whole["mapped"]["seconds"]],
            "load both first shards whole + |Δ| > τ counts (seed 000)",
            [naive["seconds"]],
            details=shared | shard_facts,
        ),
        compare(
            "sparsity_diff.vs_whole_load.peak_rss",
            "peak RSS growth (VmHWM) of the mapped diff of the first shards, MB",
            [whole["mapped"]["peak_growth_mb"]],
            "peak RSS growth loading both first shards whole (seed 000; safetensors maps them, "
            "so little of it is anonymous)",
            [naive["peak_growth_mb"]],
            unit="MB",
            details=shared
            | shard_facts
            | {
                "anon_growth_mb": whole["mapped"]["anon_growth_mb"],
                "whole_anon_mb": naive["anon_growth_mb"],
            },
        ),
        compare(
            "sparsity_diff.reference.seconds",
            "seconds of the first shards' diff with reference=True (its criteria + the script's "
            "numbers)",
            [reference["seconds"]],
            "check_sparsity.py's way: load both whole, bf16 cast, isclose over the whole Δ",
            [script["seconds"]],
            details=shared
            | shard_facts
            | {
                "close_1e-5": reference["changed_1e-5"],
                "close_counts_agree_with_script": reference["changed_1e-5"]
                == script["changed_1e-5"],
            },
        ),
        compare(
            "sparsity_diff.reference.anon_rss",
            "peak anonymous RSS growth of the first shards' diff with reference=True, MB",
            [reference["anon_growth_mb"]],
            "peak anonymous RSS growth of check_sparsity.py's way, MB",
            [script["anon_growth_mb"]],
            unit="MB",
            details=shared | shard_facts,
        ),
    ]


if __name__ == "__main__":
    # Child mode: python -m benchmarks.sparsity_diff mapped|mapped1|blocks|naive|reference|script
    #   BASE TUNED SCRATCH
    print(json.dumps(_child(*sys.argv[1:5])))
