"""A finished diff: its tables, JSON summary, masks and row/column counts, saved as plain files.

Files of a result folder (also a cache entry): `tensors.parquet` (long table), `ranks.parquet`,
`summary.json`, `masks.safetensors` (bit-packed, see masks.py) and `neurons.safetensors`
(int32 changed counts per row and per column of each 2-D tensor, keys `<tensor>|<criterion>|rows`
and `...|cols`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.atomic import save_safetensors_atomic, write_json_atomic, write_parquet_atomic
from engine.errors import SubnetScopeError
from engine.sparsity.config import DiffConfig, parse_criterion
from engine.sparsity.layout import TensorLayout
from engine.sparsity.localization import (
    BASES,
    BLOCK_CHANGED,
    DEFAULT_TOP_K,
    TENSOR_FRO,
    localization,
    tensor_fro_localization,
)
from engine.sparsity.masks import MaskSet
from engine.sparsity.reference import REFERENCE_FILE
from engine.sparsity.tables import aggregate, counts, per_layer

TENSORS, RANKS, SUMMARY, MASKS, NEURONS = (
    "tensors.parquet",
    "ranks.parquet",
    "summary.json",
    "masks.safetensors",
    "neurons.safetensors",
)


def neuron_key(tensor: str, criterion: str, axis: str) -> str:
    return f"{tensor}|{criterion}|{axis}"


@dataclass
class DiffResult:
    """Base against tuned: the long table, ranks, summary, and masks / row-column counts."""

    config: DiffConfig
    layout: TensorLayout
    tensors: pd.DataFrame
    ranks: pd.DataFrame
    summary: dict[str, Any]
    path: Path | None = None  # the folder holding the files, when saved
    _masks: MaskSet | None = field(default=None, repr=False)
    _neurons: dict[str, np.ndarray] | None = field(default=None, repr=False)
    # Per tensor as check_sparsity.py counts (DiffConfig.reference); its totals: summary.
    reference: pd.DataFrame | None = field(default=None, repr=False)

    # --- tables -------------------------------------------------------------------------------
    def counts(self, criterion: str | float | None = None) -> pd.DataFrame:
        """Per tensor under a criterion (default: the mask criterion)."""
        return counts(self.tensors, self.config.mask_criterion if criterion is None else criterion)

    def blocks(self, criterion: str | float | None = None) -> pd.DataFrame:
        """Block × module type: the heatmap's cells (layer −1: tensors outside the blocks)."""
        return aggregate(self.counts(criterion), by=["layer", "module", "role"])

    def layers(self, criterion: str | float | None = None) -> pd.DataFrame:
        return per_layer(self.counts(criterion), self.layout.num_layers)

    def localization(
        self,
        criterion: str | float | None = None,
        by: str = "layer",
        k: int = DEFAULT_TOP_K,
        basis: str = BLOCK_CHANGED,
    ) -> dict[str, Any]:
        """Localization of the update (localization.py). basis 'block_changed': changed counts
        over layers, or over the module types of the blocks (`by='module'`: mlp.up_proj,
        self_attn.q_proj, ... summed over layers); 'tensor_fro': seed 000's ‖ΔW‖_F of each
        tracked tensor (criterion and `by` do not apply)."""
        if basis not in BASES:
            raise SubnetScopeError(f"basis is one of {', '.join(BASES)}, not '{basis}'")
        if basis == TENSOR_FRO:
            return tensor_fro_localization(self.tensors, self.layout.family, k)
        if by == "layer":
            values = self.layers(criterion)["changed"]
        else:
            per_tensor = self.counts(criterion)
            values = aggregate(per_tensor[per_tensor["layer"] >= 0], by=[by])["changed"]
        return {"basis": BLOCK_CHANGED, **localization(values.to_numpy(), k)}

    # --- masks and neurons ----------------------------------------------------------------------
    @property
    def masks(self) -> MaskSet:
        if self._masks is None:
            if self.path is None or not (self.path / MASKS).is_file():
                raise LookupError("this diff kept no masks (DiffConfig.masks=False)")
            self._masks = MaskSet.open(self.path / MASKS)
        return self._masks

    @property
    def neuron_counts(self) -> dict[str, np.ndarray]:
        if self._neurons is None:
            from safetensors.numpy import load_file

            self._neurons = load_file(self.path / NEURONS) if self.path else {}
        return self._neurons

    def row_col_fractions(
        self, tensor: str, criterion: str | float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Changed share of each row and each column of a 2-D tensor."""
        label = parse_criterion(self.config.mask_criterion if criterion is None else criterion)
        rows = self.neuron_counts[neuron_key(tensor, label, "rows")]
        cols = self.neuron_counts[neuron_key(tensor, label, "cols")]
        return rows / max(cols.size, 1), cols / max(rows.size, 1)

    def neurons(self, criterion: str | float | None = None) -> pd.DataFrame:
        """Per MLP neuron (layer, neuron): the changed share of its weights in up, gate and down
        (a neuron is a row of up/gate and a column of down; GPT-2's Conv1D the other way), and
        `mean`, their mean over the roles the model has."""
        label = parse_criterion(self.config.mask_criterion if criterion is None else criterion)
        frames = []
        mlp = self.tensors.drop_duplicates("tensor")
        mlp = mlp[mlp["role"].isin(["up", "gate", "down"]) & (mlp["param"] == "weight")]
        for row in mlp.itertuples():
            axis = self.layout.neuron_axis(row.role)
            key = neuron_key(row.tensor, label, "rows" if axis == 0 else "cols")
            if key not in self.neuron_counts:
                continue
            per = self.neuron_counts[key]
            other = row.numel // max(per.size, 1)
            frames.append(
                pd.DataFrame(
                    {
                        "layer": row.layer,
                        "neuron": np.arange(per.size),
                        "role": row.role,
                        "fraction": per / max(other, 1),
                    }
                )
            )
        if not frames:
            return pd.DataFrame(columns=["layer", "neuron", "up", "gate", "down", "mean"])
        long = pd.concat(frames, ignore_index=True)
        wide = long.pivot_table(index=["layer", "neuron"], columns="role", values="fraction")
        wide = wide.reset_index().rename_axis(columns=None)
        roles = [r for r in ("up", "gate", "down") if r in wide.columns]
        return wide.assign(mean=wide[roles].mean(axis=1))

    # --- files --------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the tables, neuron counts, in-memory masks and (last) the summary into `folder`."""
        write_parquet_atomic(folder / TENSORS, self.tensors)
        write_parquet_atomic(folder / RANKS, self.ranks)
        save_safetensors_atomic(folder / NEURONS, self.neuron_counts)
        if self.reference is not None:
            write_parquet_atomic(folder / REFERENCE_FILE, self.reference)
        if self._masks is not None and self._masks.path != folder / MASKS:
            self._masks.save(folder / MASKS)
        # Last: `load` starts from the summary, so a folder with one holds the rest.
        write_json_atomic(folder / SUMMARY, self.summary)
        return folder

    @classmethod
    def load(cls, folder: Path) -> DiffResult:
        summary = json.loads((folder / SUMMARY).read_text())
        tensors = pd.read_parquet(folder / TENSORS)
        config = DiffConfig(
            **{**summary["config"], "tolerances": tuple(summary["config"]["tolerances"])}
        )
        lay = summary["layout"]
        if "localization_seed" not in summary:  # cached before the seed basis was added
            summary["localization_seed"] = tensor_fro_localization(tensors, lay["family"])
        layout = TensorLayout(
            family=lay["family"],
            num_layers=lay["num_layers"],
            leaves=tuple(lay["leaves"]),
            roles=dict(lay["roles"]),
            transposed_weights=lay["transposed_weights"],
            notes=tuple(lay["notes"]),
        )
        return cls(
            config=config,
            layout=layout,
            tensors=tensors,
            ranks=pd.read_parquet(folder / RANKS),
            summary=summary,
            path=folder,
            reference=pd.read_parquet(folder / REFERENCE_FILE)
            if (folder / REFERENCE_FILE).is_file()
            else None,
        )
