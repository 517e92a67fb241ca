"""Diff a base model against a tuned one, tensor by tensor, and cache the result by fingerprints.

Only one row block of each model is in memory at a time (plus, with ranks, the one ΔW being
decomposed), so two multi-GB checkpoints diff in about a block's worth of RAM. Safetensors files
are memory-mapped and read in place (engine.sparsity.stream); other sources are read block by
block into reused buffers (engine.sparsity.stats).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine.errors import SubnetScopeError
from engine.sparsity.config import BF16, EXACT, DiffConfig
from engine.sparsity.layout import TensorLayout, layout_for
from engine.sparsity.localization import BLOCK_CHANGED, localization, tensor_fro_localization
from engine.sparsity.masks import MaskSet, MaskWriter
from engine.sparsity.reader import TensorSpec
from engine.sparsity.reference import ReferenceCounts, reference_summary, reference_table
from engine.sparsity.resolve import open_source
from engine.sparsity.result import MASKS, DiffResult, neuron_key
from engine.sparsity.sources import WeightSource
from engine.sparsity.stats import TensorStats, Workspace, block_rows, diff_tensor
from engine.sparsity.stream import MappedFiles, can_map, diff_mapped, mapped_info, pool_for
from engine.sparsity.tables import counts, layer_fractions, long_table, per_layer, rank_table

if TYPE_CHECKING:
    from engine.cache import ArtifactStore

ARTIFACT_KIND = "sparsity-diff"
Progress = Callable[[float, str], None]
_SHOWN = 3  # names listed in a mismatch error


@dataclass
class Mismatch:
    """Tensors the two models do not share: names on one side only, and differing shapes."""

    only_base: list[str] = field(default_factory=list)
    only_tuned: list[str] = field(default_factory=list)
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.only_base or self.only_tuned or self.shapes)

    def describe(self) -> str:
        def listed(names: list[str]) -> str:
            more = f", … ({len(names)} in all)" if len(names) > _SHOWN else ""
            return ", ".join(names[:_SHOWN]) + more

        parts = []
        if self.only_base:
            parts.append(f"{len(self.only_base)} only in base ({listed(self.only_base)})")
        if self.only_tuned:
            parts.append(f"{len(self.only_tuned)} only in tuned ({listed(self.only_tuned)})")
        if self.shapes:
            shown = [f"{n} {b}→{t}" for n, b, t in self.shapes]
            parts.append(f"{len(self.shapes)} with other shapes ({listed(shown)})")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "only_base": self.only_base,
            "only_tuned": self.only_tuned,
            "shapes": [{"tensor": n, "base": list(b), "tuned": list(t)} for n, b, t in self.shapes],
        }


def match_tensors(
    base: dict[str, TensorSpec], tuned: dict[str, TensorSpec], intersection: bool
) -> tuple[list[str], Mismatch]:
    """The tensor names to compare, in the base's order, and what does not match."""
    mismatch = Mismatch(
        only_base=[n for n in base if n not in tuned],
        only_tuned=[n for n in tuned if n not in base],
        shapes=[
            (n, base[n].shape, tuned[n].shape)
            for n in base
            if n in tuned and base[n].shape != tuned[n].shape
        ],
    )
    bad = {n for n, _, _ in mismatch.shapes}
    common = [n for n in base if n in tuned and n not in bad]
    if mismatch and not intersection:
        raise SubnetScopeError(
            f"base and tuned do not hold the same tensors: {mismatch.describe()}; "
            f"pass intersection=True (--intersection) to compare the {len(common)} they share"
        )
    if not common:
        raise SubnetScopeError("base and tuned share no tensor of equal shape")
    return common, mismatch


def _summary(
    stats: list[TensorStats],
    tensors: pd.DataFrame,
    ranks: pd.DataFrame,
    config: DiffConfig,
    layout: TensorLayout,
    labels: tuple[str, str],
    mismatch: Mismatch,
    seconds: float,
    bytes_read: int,
) -> dict[str, Any]:
    numel = sum(s.numel for s in stats)
    totals = {}
    for criterion in config.criteria:
        changed = sum(s.changed[criterion] for s in stats)
        totals[criterion] = {"changed": changed, "fraction": changed / numel if numel else math.nan}
    exact = totals[EXACT]["changed"]
    delta_sq, base_sq = sum(s.delta_sq for s in stats), sum(s.base_sq for s in stats)
    per_tensor = counts(tensors, config.mask_criterion)
    layers = per_layer(per_tensor, layout.num_layers)
    fractions = {
        criterion: layer_fractions(counts(tensors, criterion), layout.num_layers)
        for criterion in config.criteria
    }
    summary: dict[str, Any] = {
        "base": labels[0],
        "tuned": labels[1],
        "config": asdict(config) | {"tolerances": list(config.tolerances)},
        "layout": {
            "family": layout.family,
            "num_layers": layout.num_layers,
            "leaves": list(layout.leaves),
            "roles": layout.roles,
            "transposed_weights": layout.transposed_weights,
            "notes": list(layout.notes),
        },
        "tensors": len(stats),
        "numel": numel,
        "changed": totals,
        # PULSE's caveat, measured: the share of stored changes that a bf16 copy would not show.
        "bf16_invisible_share": (exact - totals[BF16]["changed"]) / exact if exact else math.nan,
        "rel_norm": math.sqrt(delta_sq) / math.sqrt(base_sq) if base_sq else math.nan,
        "mask_criterion": config.mask_criterion,
        "layers": {
            "layer": layers["layer"].tolist(),
            "numel": layers["numel"].tolist(),
            "fraction": fractions,
        },
        # Two bases, labelled (localization.py): SubnetScope's, and seed 000's own.
        "localization": {"basis": BLOCK_CHANGED, **localization(layers["changed"].to_numpy())},
        "localization_seed": tensor_fro_localization(tensors, layout.family),
        "mismatch": mismatch.as_dict(),
        "seconds": round(seconds, 3),
        "bytes_read": bytes_read,
        "gb_per_s": round(bytes_read / seconds / 1e9, 3) if seconds else None,
    }
    if config.ranks and len(ranks):
        done = ranks[ranks["method"] == "svd"]
        summary["ranks"] = {
            "matrices": len(ranks),
            "computed": len(done),
            "skipped": int((ranks["method"] == "skipped").sum()),
            "median_rank_ratio": float((done["rank"] / done["max_rank"]).median())
            if len(done)
            else None,
        }
    return summary


def compute_diff(
    base: WeightSource,
    tuned: WeightSource,
    config: DiffConfig,
    *,
    out_dir: Path | None = None,
    progress: Progress | None = None,
    mapped: bool = True,
) -> DiffResult:
    """Run the diff. With `out_dir` the masks stream into it and the result is saved there;
    without, everything stays in memory. `mapped=False` reads every block through the sources
    (the path before engine.sparsity.stream, kept as its reference in tests and benchmarks)."""
    base_specs, tuned_specs = base.specs(), tuned.specs()
    names, mismatch = match_tensors(base_specs, tuned_specs, config.intersection)
    layout = layout_for(base.config_dir or tuned.config_dir, names)
    started = time.perf_counter()
    # One reusable read buffer per side, sized for the largest block in bytes.
    largest = max(
        base_specs[n].row_numel
        * block_rows(base_specs[n], config.block_mb)
        * max(base_specs[n].itemsize, tuned_specs[n].itemsize)
        for n in names
    )
    buffers = (np.empty(largest, np.uint8), np.empty(largest, np.uint8))
    block_numel = max(
        base_specs[n].row_numel * block_rows(base_specs[n], config.block_mb) for n in names
    )
    workspace = Workspace(block_numel, len(config.criteria))
    # Pairs of plain safetensors tensors in one dtype the kernels read are mapped, not copied.
    infos = {n: (mapped_info(base, n), mapped_info(tuned, n)) for n in names}
    mapped_names = {n for n in names if mapped and can_map(*infos[n])}
    maps = (MappedFiles(), MappedFiles())
    pool = pool_for([base_specs[n] for n in mapped_names], config)
    shapes = {n: base_specs[n].shape for n in names}
    saving_masks = config.masks and out_dir is not None
    writer = MaskWriter(out_dir / MASKS, shapes, config.mask_criterion) if saving_masks else None
    in_memory: dict[str, list[np.ndarray]] = {}
    total_bytes = sum(base_specs[n].nbytes + tuned_specs[n].nbytes for n in names)
    done_bytes = 0
    stats: list[TensorStats] = []
    references: list[ReferenceCounts] = []
    try:
        for name in names:
            if progress is not None:
                progress(done_bytes / total_bytes if total_bytes else 1.0, name)
            keep = in_memory.setdefault(name, []).append if config.masks and not writer else None
            # The script iterates named_parameters: floating tensors only.
            ref = None
            if config.reference and base_specs[name].is_float and tuned_specs[name].is_float:
                ref = ReferenceCounts(name)
                references.append(ref)
            if name in mapped_names:
                stat = diff_mapped(
                    maps,
                    infos[name],
                    config,
                    pool,
                    mask_writer=writer,
                    on_mask=keep,
                    reference=ref,
                )
            else:
                stat = diff_tensor(
                    base,
                    tuned,
                    base_specs[name],
                    tuned_specs[name],
                    config,
                    buffers=buffers,
                    workspace=workspace,
                    mask_writer=writer,
                    on_mask=keep,
                    reference=ref,
                )
            stats.append(stat)
            done_bytes += base_specs[name].nbytes + tuned_specs[name].nbytes
    finally:
        pool.close()
        for m in maps:
            m.close()
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - started
    tensors = long_table(stats, layout, config.tolerances)
    ranks = rank_table(stats, layout)
    labels = (base.label, tuned.label)
    summary = _summary(stats, tensors, ranks, config, layout, labels, mismatch, seconds, done_bytes)
    reference = None
    if config.reference:
        reference = reference_table(references, config.tolerances)
        summary["reference"] = reference_summary(
            reference, config.tolerances, config.reference_dtype
        )
    neurons = {
        neuron_key(s.name, c, axis): counts_
        for s in stats
        for axis, by_criterion in (("rows", s.rows), ("cols", s.cols))
        for c, counts_ in by_criterion.items()
    }
    masks = None
    if in_memory:
        masks = MaskSet(
            shapes,
            config.mask_criterion,
            {n: np.concatenate(parts) for n, parts in in_memory.items()},
        )
    result = DiffResult(
        config, layout, tensors, ranks, summary, _masks=masks, _neurons=neurons, reference=reference
    )
    if out_dir is not None:
        result.save(out_dir)
        result.path = out_dir
    if progress is not None:
        progress(1.0, f"{len(names)} tensors compared")
    return result


def diff(
    base: str | Path | WeightSource,
    tuned: str | Path | WeightSource,
    config: DiffConfig | None = None,
    *,
    cache: bool = True,
    store: ArtifactStore | None = None,
    progress: Progress | None = None,
) -> DiffResult:
    """Diff `tuned` against `base`. A tuned PEFT adapter folder is merged onto `base`.

    The result is cached in the ArtifactStore (kind 'sparsity-diff') under the inputs'
    fingerprints and the config, when both sources have fingerprints (files on disk).
    """
    config = config or DiffConfig()
    base_src = open_source(base)
    tuned_src = open_source(tuned, base=base_src)
    # Fail on mismatched tensors before taking any cache lock.
    match_tensors(base_src.specs(), tuned_src.specs(), config.intersection)
    fingerprints = (base_src.fingerprint(), tuned_src.fingerprint())
    if not cache or None in fingerprints:
        return compute_diff(base_src, tuned_src, config, progress=progress)
    from engine.cache import ArtifactStore

    store = store if store is not None else ArtifactStore()
    inputs = {"base": fingerprints[0], "tuned": fingerprints[1]}

    def compute(writer) -> None:
        compute_diff(base_src, tuned_src, config, out_dir=writer.path, progress=progress)

    entry = store.get_or_compute(
        ARTIFACT_KIND,
        inputs,
        config.cache_params(),
        compute,
        meta={"base": base_src.label, "tuned": tuned_src.label},
    )
    return DiffResult.load(entry.path)
