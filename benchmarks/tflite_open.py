"""Open a .tflite and list every op and tensor: our mmap reader against a naive whole-file walk
with the `tflite` package and Model Explorer's own TFLite adapters (issue 4, item 7), on the
largest real vision model, the converter-made demo model (.tflite and .litertlm, issue 18) where
it is built, and a > 2 GB synthetic file."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tflite

from benchmarks.runner import ROOT, Result, benchmark, compare, spread
from engine.tflite import open_file
from engine.tflite.converted.build import built_samples
from engine.tflite.synthetic import write_large_offset

REAL_MODELS = ROOT / "cache" / "testdata" / "mediapipe"
# SmolLM2-135M-Instruct's own weights through Google's converter: prefill + decode, 122 subgraphs.
CONVERTED_DEMO = "smollm2-135m-fp32"
# The naive walk and Model Explorer each hold the whole > 2 GB file in memory (2.1 GiB added).
MIN_AVAILABLE_FOR_FULL_READ = 6 * 2**30
CHILD_TIMEOUT = 120.0
MIB = 2**20
CUSTOM = tflite.BuiltinOperator.CUSTOM


@dataclass(frozen=True)
class Listing:
    """What a walk saw: our reader and the naive walk must agree on the same model."""

    subgraphs: int
    ops: int
    opcodes: int  # distinct builtin or custom operators
    op_io: int  # operator inputs + outputs
    tensors: int
    dtypes: int  # distinct tensor types
    shape_dims: int
    name_chars: int
    const_bytes: int  # summed over tensors, so a shared buffer counts once per tensor


def ours(path: Path) -> Listing:
    """Our path: recognise the file, map it, read the graph, touch every op and tensor."""
    ops = op_io = tensors = shape_dims = name_chars = const_bytes = 0
    opcodes, dtypes = set(), set()
    with open_file(path).open() as reader:
        info = reader.info()
        for sg in info.subgraphs:
            ops += len(sg.ops)
            for op in sg.ops:
                opcodes.add(op.opcode)
                op_io += len(op.inputs) + len(op.outputs)
            tensors += len(sg.tensors)
            for t in sg.tensors:
                dtypes.add(t.dtype)
                shape_dims += len(t.shape)
                name_chars += len(t.name)
                const_bytes += t.buffer_bytes
        n_subgraphs = len(info.subgraphs)
    return Listing(
        n_subgraphs,
        ops,
        len(opcodes),
        op_io,
        tensors,
        len(dtypes),
        shape_dims,
        name_chars,
        const_bytes,
    )


def _size(array: np.ndarray | int) -> int:
    # The generated `...AsNumpy()` accessors return the int 0 for an absent vector.
    return array.size if isinstance(array, np.ndarray) else 0


def naive_walk(path: Path) -> Listing:
    """What a script on the `tflite` package does: read the whole file, then walk it."""
    with open(path, "rb") as f:
        buf = f.read()
    model = tflite.Model.GetRootAsModel(buf, 0)
    ops = op_io = tensors = shape_dims = name_chars = const_bytes = 0
    opcodes, dtypes = set(), set()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        ops += sg.OperatorsLength()
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            # Opcodes past 127 live in BuiltinCode; older files only fill the deprecated byte.
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            opcodes.add(code.CustomCode() if builtin == CUSTOM else builtin)
            op_io += _size(op.InputsAsNumpy()) + _size(op.OutputsAsNumpy())
        tensors += sg.TensorsLength()
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            dtypes.add(t.Type())
            shape_dims += _size(t.ShapeAsNumpy())
            name_chars += len((t.Name() or b"").decode("utf-8", errors="replace"))
            b = model.Buffers(t.Buffer())
            b.DataAsNumpy()
            # Past 2 GB the data sits outside the flatbuffer: Buffer.offset / size.
            const_bytes += b.DataLength() or b.Size()
    return Listing(
        model.SubgraphsLength(),
        ops,
        len(opcodes),
        op_io,
        tensors,
        len(dtypes),
        shape_dims,
        name_chars,
        const_bytes,
    )


def explorer(adapter: str) -> Callable[[Path], int]:
    """Model Explorer's in-process conversion of a .tflite to its graph JSON (the call its server
    makes on upload); returns the node count. Imports model_explorer (2 s, pulls in torch)."""
    if adapter == "flatbuffer":
        from model_explorer.builtin_tflite_flatbuffer_adapter import (
            BuiltinTfliteFlatbufferAdapter as Adapter,
        )
    else:
        from model_explorer.builtin_tflite_mlir_adapter import BuiltinTfliteMlirAdapter as Adapter

    def convert(path: Path) -> int:
        graphs = Adapter().convert(str(path), {})["graphCollections"]
        return sum(len(g.get("nodes", [])) for c in graphs for g in c.graphs)

    return convert


# Model Explorer's default for .tflite is the flatbuffer adapter: the first one it registers.
EXPLORER_ADAPTERS = ("flatbuffer", "mlir")
BASELINES = {
    "naive_walk": "naive whole-file walk with the `tflite` package",
    **{
        f"explorer_{a}": f"Model Explorer builtin_tflite_{a}_adapter convert() to graph JSON"
        for a in EXPLORER_ADAPTERS
    },
}


def _method(name: str) -> Callable[[Path], object]:
    if name == "ours":
        return ours
    if name == "naive_walk":
        return naive_walk
    return explorer(name.removeprefix("explorer_"))


def _status_bytes(key: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) or /proc/meminfo, in bytes."""
    source = Path("/proc/meminfo" if key.startswith("Mem") else "/proc/self/status")
    for line in source.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child_main(method: str, path: str) -> None:
    """In a fresh process: one call of `method`, with its time and the RSS it added at its peak."""
    fn = _method(method)
    # Writing 5 resets VmHWM to the current RSS, so imports do not count in the peak.
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_bytes("VmRSS")
    started = time.perf_counter()
    fn(Path(path))
    seconds = time.perf_counter() - started
    peak = _status_bytes("VmHWM")
    print(json.dumps({"seconds": seconds, "rss_before": before, "peak_rss": peak}))


def _child_peak(method: str, path: Path) -> dict[str, float | str]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.tflite_open", method, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][-300:]}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "peak_rss_growth_mib": round((out["peak_rss"] - out["rss_before"]) / MIB, 2),
        "seconds": round(out["seconds"], 4),
    }


def _measure(
    path: Path, methods: list[str], repeats: int
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Seconds per method over interleaved rounds, each round starting one method later, after
    one unmeasured warm-up each; also what each warm-up returned, or why a baseline failed (a
    baseline that raises or will not import is dropped: its refusal is a finding)."""
    fns: dict[str, Callable[[Path], object]] = {}
    outputs: dict[str, object] = {}
    for name in methods:
        try:
            fn = _method(name)
            outputs[name] = fn(path)
        except Exception as exc:
            if name == "ours":
                raise
            outputs[name] = f"failed: {type(exc).__name__}: {exc}"[:300]
            continue
        fns[name] = fn
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for round_ in range(repeats):
        shift = round_ % len(order)
        for name in order[shift:] + order[:shift]:
            started = time.perf_counter()
            fns[name](path)
            samples[name].append(time.perf_counter() - started)
    return samples, outputs


def _results(
    label: str,
    path: Path,
    samples: dict[str, list[float]],
    outputs: dict[str, object],
    extra: dict[str, object],
) -> list[Result]:
    """One result per baseline that ran: ours against it; just ours when none did."""
    listing = outputs["ours"]
    assert isinstance(listing, Listing)
    naive = outputs.get("naive_walk")
    details = {
        "model": str(path),
        "file_bytes": path.stat().st_size,
        "listing": asdict(listing),
        "naive_listing_matches": naive == listing if isinstance(naive, Listing) else None,
        "explorer_nodes": {m: outputs[m] for m in outputs if m.startswith("explorer_")},
        "baseline_failures": {
            m: out
            for m, out in outputs.items()
            if isinstance(out, str) and out.startswith("failed")
        },
    } | extra
    metric = "seconds to open the file and list every op and tensor, ours (median)"
    results = [
        compare(
            f"tflite_open.{label}.vs_{name}",
            metric,
            samples["ours"],
            what,
            samples[name],
            details=details,
        )
        for name, what in BASELINES.items()
        if name in samples
    ]
    for result in results:
        # `ratio` is ours / baseline; the speed-up is its inverse.
        result.details["speedup"] = round(result.baseline_value / result.value, 2)
    if not results:
        ours_s = spread(samples["ours"])
        results.append(
            Result(
                f"tflite_open.{label}.ours",
                metric,
                ours_s["median"],
                "s",
                len(samples["ours"]),
                details={"measured": ours_s} | details,
            )
        )
    return results


def _rss_growth_ours(path: Path) -> dict[str, float]:
    """VmRSS before and after a fresh open + list in this process, with the model still open
    and after closing it."""
    before = _status_bytes("VmRSS")
    with open_file(path).open() as reader:
        info = reader.info()
        sum(len(t.name) + len(t.shape) for sg in info.subgraphs for t in sg.tensors)
        while_open = _status_bytes("VmRSS")
    after = _status_bytes("VmRSS")
    return {
        "rss_growth_open_mib": round((while_open - before) / MIB, 2),
        "rss_growth_closed_mib": round((after - before) / MIB, 2),
    }


def _memory_results(peaks: dict[str, dict[str, float | str]]) -> list[Result]:
    """Ours against each baseline on the peak RSS one open + list adds in a fresh process."""
    ours_mib = peaks["ours"].get("peak_rss_growth_mib")
    if ours_mib is None:
        return []
    results = []
    for name, peak in peaks.items():
        base_mib = peak.get("peak_rss_growth_mib")
        if name == "ours" or base_mib is None:
            continue
        results.append(
            Result(
                f"tflite_open.large_2gb.peak_rss_vs_{name}",
                "peak RSS that one open + list adds in a fresh process, ours",
                float(ours_mib),
                "MiB",
                1,
                baseline=BASELINES[name],
                baseline_value=float(base_mib),
                ratio=float(ours_mib) / float(base_mib) if base_mib else None,
                details={"children": peaks},
            )
        )
    return results


@benchmark("tflite_open", repeats=5)
def tflite_open(repeats: int) -> list[Result]:
    """Seconds to open and list every op and tensor of the largest real model, of the converted
    demo model (.tflite and .litertlm; skipped where not built) and of a > 2 GB file, against the
    `tflite` package's naive walk and Model Explorer's converters; for the > 2 GB file also the
    RSS each adds."""
    methods = ["ours", *BASELINES]
    skipped: dict[str, str] = {}
    results: list[Result] = []

    real = sorted(REAL_MODELS.glob("*.tflite"), key=lambda p: p.stat().st_size)
    if real:
        samples, outputs = _measure(real[-1], methods, repeats)
        results += _results("largest_real", real[-1], samples, outputs, {})
    else:
        skipped["largest_real"] = f"no *.tflite under {REAL_MODELS}"

    demo = built_samples([CONVERTED_DEMO])
    if demo:
        for label, path in (
            ("converted_demo_tflite", demo[0].tflite),
            # The baselines read only a bare flatbuffer: a refusal of the bundle is recorded.
            ("converted_demo_litertlm", demo[0].litertlm),
        ):
            samples, outputs = _measure(path, methods, repeats)
            results += _results(label, path, samples, outputs, {})
    else:
        skipped["converted_demo"] = (
            f"the converter sample {CONVERTED_DEMO} is not built "
            "(scripts/build_converted_samples.sh)"
        )

    with tempfile.TemporaryDirectory(prefix="tflite_open-") as tmp:
        big = write_large_offset(Path(tmp) / "large_offset.tflite")
        available = _status_bytes("MemAvailable")
        if available < MIN_AVAILABLE_FOR_FULL_READ:
            methods = ["ours"]
            skipped["large_2gb_baselines"] = (
                f"MemAvailable {available / 2**30:.1f} GiB < "
                f"{MIN_AVAILABLE_FOR_FULL_READ / 2**30:.0f} GiB, and the naive walk and Model "
                "Explorer each hold the whole file in memory"
            )
        # Before any whole-file read has passed through this process.
        in_process = _rss_growth_ours(big)
        peaks = {m: _child_peak(m, big) for m in methods}
        samples, outputs = _measure(big, methods, repeats)
        extra = {
            "disk_bytes": big.stat().st_blocks * 512,
            "ours_rss_in_process": in_process,
            "peak_rss_children": peaks,
        }
        results += _results("large_2gb", big, samples, outputs, extra)
        results += _memory_results(peaks)
    for result in results:
        result.details["skipped"] = skipped
    return results


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2])
