"""`python -m engine neuron show|overlap|sets` in-process on the tiny-model workspace of
tests/passport_support.py (ICA templates, a SparC3 run, a diff, an adapter, activations)."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from tests.passport_support import LAYER, NEURON, built_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with built_workspace(tmp_path_factory.mktemp("neuron-cli")) as built:
        yield built


def _json(capsys, *argv: str):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_show_prints_the_passport_json(workspace, capsys):
    from engine.neurons.passport import passport

    model = workspace["model"]
    out = _json(
        capsys,
        "neuron",
        "show",
        "--model",
        model,
        "--layer",
        str(LAYER),
        "--neuron",
        str(NEURON),
        "--json",
    )
    expected = json.loads(json.dumps(passport(model, LAYER, NEURON).as_dict()))
    assert out == expected
    assert out["missing"] == [] and out["updates"][0]["mean"] == pytest.approx(1.0)
    assert out["adapters"][0]["rank"] == 1 and out["activation"]["neuron"] == NEURON


def test_show_in_words(workspace, capsys):
    assert (
        main(
            [
                "neuron",
                "show",
                "--model",
                workspace["model"],
                "--layer",
                str(LAYER),
                "--neuron",
                str(NEURON),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert text.startswith(f"Neuron L{LAYER}.{NEURON} of {workspace['model']}")
    for title in (
        "ICA components:",
        "Pruning scores:",
        "Weight updates:",
        "Adapters:",
        "Top-activating snippets:",
    ):
        assert title in text
    assert "Not computed yet" not in text


def test_overlap_gives_pairs_with_p_values(workspace, capsys):
    out = _json(
        capsys,
        "neuron",
        "overlap",
        "--model",
        workspace["model"],
        "--sets",
        "pruning:5",
        "list:1.5,0.2",
        "--json",
        "--layers",
    )
    assert [s["spec"] for s in out["sets"]] == ["pruning:5", "list:1.5,0.2"]
    assert [s["size"] for s in out["sets"]] == [5, 2]
    [pair] = out["pairs"]
    assert pair["a"] == "pruning:5" and pair["b"] == "list:1.5,0.2"
    assert pair["population"] == 96 and pair["size_a"] == 5 and pair["size_b"] == 2
    for key in ("shared", "jaccard", "expected", "p_value", "p_layered", "q_layered"):
        assert key in pair
    assert 0 <= pair["p_value"] <= 1 and 0 <= pair["p_layered"] <= 1
    assert [row["layer"] for row in pair["layers"]] == [0, 1]


def test_overlap_of_every_known_set_in_words(workspace, capsys):
    assert main(["neuron", "overlap", "--model", workspace["model"], "--top", "5"]) == 0
    text = capsys.readouterr().out
    assert "p_layered" in text and "adapter:5@planted" in text and "ica:0" in text


def test_sets_lists_each_area(workspace, capsys):
    rows = _json(capsys, "neuron", "sets", "--model", workspace["model"], "--top", "5", "--json")
    assert {r["area"] for r in rows} == {"ica", "pruning", "updates", "adapter"}
    assert all(r["model"] == workspace["model"] for r in rows)
    assert main(["neuron", "sets", "--model", workspace["model"], "--top", "5"]) == 0
    assert "adapter:5@planted" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "--layer", "1", "--neuron", "48"],
        ["overlap", "--sets", "pruning:5"],
        ["overlap", "--sets", "pruning:5", "nope:1"],
        ["sets", "--top", "0"],
    ],
)
def test_errors_print_one_line_and_return_1(workspace, capsys, argv):
    assert main(["neuron", argv[0], "--model", workspace["model"], *argv[1:]]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
