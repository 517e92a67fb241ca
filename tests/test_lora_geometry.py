"""Geometry from factors equals the dense computation: norms, ranks, cosines per module/overall."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine.lora.adapters import load_adapter_set
from engine.lora.blend import BlendSpec, blend
from engine.lora.geometry import cosine_matrix, cosine_table, geometry_table, inspect_adapters
from engine.lora.lowrank import effective_rank, stable_rank
from tests.lora_support import make_adapters


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    return load_adapter_set(make_adapters(tmp_path_factory.mktemp("geometry"), 3))


def test_geometry_table_equals_dense(adapters) -> None:
    table = geometry_table(adapters)
    assert len(table) == 3 * len(adapters.modules)
    assert {"adapter", "module", "layer", "kind", "rank", "norm", "effective_rank"} <= set(
        table.columns
    )
    for adapter in adapters.adapters:
        for module, f in adapter.factors.items():
            row = table[(table["adapter"] == adapter.name) & (table["module"] == module)].iloc[0]
            dense = f.dense().double()
            s = torch.linalg.svdvals(dense)
            s = s[s > 1e-7 * s[0]]
            assert row["norm"] == pytest.approx(float(torch.linalg.matrix_norm(dense)), rel=1e-6)
            assert row["effective_rank"] == pytest.approx(effective_rank(s), rel=1e-6)
            assert row["stable_rank"] == pytest.approx(stable_rank(s), rel=1e-6)
            assert row["rank"] == 4 and row["numerical_rank"] == 4
            assert row["layer"] == int(module.split(".")[2]) and row["kind"] == module[-6:]


def test_blend_rows(adapters) -> None:
    result = blend(adapters, BlendSpec((0.5, 0.3, 0.2), "svd", rank=2))
    table = geometry_table(adapters, result, blend_name="mix")
    rows = table[table["adapter"] == "mix"]
    assert len(rows) == len(adapters.modules) and set(rows["role"]) == {"blend"}
    assert (rows["numerical_rank"] == 2).all()


def test_cosines_equal_dense(adapters) -> None:
    table = cosine_table(adapters)
    assert len(table) == 3 * len(adapters.modules)  # pairs a<b per module
    dense = {
        a.name: {m: f.dense().double().flatten() for m, f in a.factors.items()}
        for a in adapters.adapters
    }
    for row in table.itertuples():
        x, y = dense[row.a][row.module], dense[row.b][row.module]
        assert row.cosine == pytest.approx(float(x @ y / (x.norm() * y.norm())), abs=1e-6)
    matrix = cosine_matrix(adapters)
    flat = {n: torch.cat([dense[n][m] for m in adapters.modules]) for n in adapters.names}
    for a in adapters.names:
        for b in adapters.names:
            expected = float(flat[a] @ flat[b] / (flat[a].norm() * flat[b].norm()))
            assert matrix.loc[a, b] == pytest.approx(expected, abs=1e-6)


def test_opposite_adapters_have_cosine_minus_one(adapters, tmp_path) -> None:
    from dataclasses import replace

    from engine.lora.adapters import AdapterSet, LoraAdapter
    from engine.lora.lowrank import Factors

    a = adapters.adapters[0]
    negated = LoraAdapter(
        replace(a.info, name="neg"),
        {m: Factors(-f.b, f.a, f.scale) for m, f in a.factors.items()},
    )
    pair = AdapterSet((a, negated), adapters.modules)
    assert cosine_matrix(pair).loc["a0", "neg"] == pytest.approx(-1.0)
    assert (cosine_table(pair)["cosine"] + 1).abs().max() < 1e-9


def test_inspect_is_json_ready(adapters) -> None:
    report = inspect_adapters(adapters)
    text = json.dumps(report, allow_nan=False)
    back = json.loads(text)
    assert [a["name"] for a in back["adapters"]] == ["a0", "a1", "a2"]
    assert back["adapters"][0]["scaling"] == 2 and back["adapters"][0]["rank"] == 4
    assert isinstance(back["geometry"][0]["layer"], int)
    matrix = back["cosine_overall"]["matrix"]
    assert all(math.isclose(matrix[i][i], 1.0) for i in range(3))
