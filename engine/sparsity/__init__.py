"""Which weights fine-tuning moved: streamed diffs, update masks, ranks, localization, shells."""

from engine.sparsity.compare import CompareResult, compare_runs
from engine.sparsity.config import BF16, DEFAULT_TOLERANCES, EXACT, DiffConfig, parse_criterion
from engine.sparsity.diff import ARTIFACT_KIND, Mismatch, compute_diff, diff, match_tensors
from engine.sparsity.layout import TensorLayout, TensorPlace, layout_for
from engine.sparsity.localization import (
    BASES,
    compare_distributions,
    depth_profile,
    gini,
    localization,
    normalized_entropy,
    tensor_fro_localization,
    top_k_share,
)
from engine.sparsity.masks import (
    MaskSet,
    coverage,
    jaccard,
    overlap_table,
    overlap_totals,
    pack,
    unpack,
)
from engine.sparsity.ranks import RankStats, ranks_from_spectrum, update_ranks
from engine.sparsity.reference import script_report
from engine.sparsity.result import DiffResult
from engine.sparsity.series import SEED_TAUS, SeriesResult, list_checkpoints, seed_tracked, series
from engine.sparsity.shells import (
    boundaries_from_config,
    shell_boundaries,
    shell_summary,
    shell_table,
)
from engine.sparsity.sources import SafetensorsSource, TensorDictSource, WeightSource, open_source
from engine.sparsity.tables import aggregate, counts, per_layer

__all__ = [
    "ARTIFACT_KIND",
    "BASES",
    "BF16",
    "DEFAULT_TOLERANCES",
    "EXACT",
    "SEED_TAUS",
    "CompareResult",
    "DiffConfig",
    "DiffResult",
    "MaskSet",
    "Mismatch",
    "RankStats",
    "SafetensorsSource",
    "SeriesResult",
    "TensorDictSource",
    "TensorLayout",
    "TensorPlace",
    "WeightSource",
    "aggregate",
    "boundaries_from_config",
    "compare_distributions",
    "compare_runs",
    "compute_diff",
    "counts",
    "coverage",
    "depth_profile",
    "diff",
    "gini",
    "jaccard",
    "layout_for",
    "list_checkpoints",
    "localization",
    "match_tensors",
    "normalized_entropy",
    "open_source",
    "overlap_table",
    "overlap_totals",
    "pack",
    "parse_criterion",
    "per_layer",
    "ranks_from_spectrum",
    "script_report",
    "seed_tracked",
    "series",
    "shell_boundaries",
    "shell_summary",
    "shell_table",
    "tensor_fro_localization",
    "top_k_share",
    "unpack",
    "update_ranks",
]
