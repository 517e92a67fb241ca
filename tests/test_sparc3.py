"""The SparC3 pipeline and the attribution jobs on a tiny model, in job processes (LRP patches
torch process-wide, so it never runs in the test process), and the CLI on their files."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from engine.cli import main
from engine.jobs import submit, wait_job
from engine.jobs.files import RESULT
from tests.tiny import save_tiny_folder

SMALL = {
    "general_seeds": [0, 1],
    "general_samples": 3,
    "target_samples": 4,
    "generate": 4,
    "max_length": 32,
    "num_neurons": 6,
    "eval_nums": [0, 3, 6],
    "eval_max_tokens": 128,
    "eval_text": "demo-general",
}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    save_tiny_folder(folder)
    return str(folder)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("method", ["lrp", "wanda"])
def test_pipeline_job_writes_every_artifact(cache, tiny_folder, method):
    view = submit(
        "prune.sparc3", {"model": tiny_folder, "method": method, **SMALL, "causal": method == "lrp"}
    )
    done = wait_job(view.id, timeout=300)
    assert done.status.state == "succeeded", done.status.message
    out = done.path / RESULT
    names = {p.name for p in out.iterdir()}
    expected = {
        "general_seed0.safetensors",
        "general_seed1.safetensors",
        "target.safetensors",
        "neurons.json",
        "candidates.parquet",
        "evaluation.parquet",
        "sparc3.json",
    }
    assert expected <= names
    assert ("wanda_general.safetensors" in names) == (method == "lrp")
    neurons = json.loads((out / "neurons.json").read_text())["neurons"]
    assert len(neurons) == 6
    scores = [n["score"] for n in neurons]
    assert scores == sorted(scores)  # most target-specific (most negative) first
    candidates = pd.read_parquet(out / "candidates.parquet")
    assert list(candidates[["layer", "neuron"]].head(6).itertuples(index=False, name=None)) == [
        (n["layer"], n["neuron"]) for n in neurons
    ]
    evaluation = pd.read_parquet(out / "evaluation.parquet")
    assert evaluation["neurons"].tolist() == [0, 3, 6]
    assert evaluation["scorer"].str.startswith("profanity-check").all()
    assert evaluation["perplexity_change"].iloc[0] == 0
    summary = json.loads((out / "sparc3.json").read_text())
    if method == "lrp":  # Wanda's own selection beside LRP's, both scored against the causal set
        assert {"wanda_neurons.json", "causal.json", "causal_single.parquet"} <= names
        recovery = pd.DataFrame(summary["recovery"])
        assert sorted(recovery["method"]) == ["lrp (weights, none)", "wanda (none)"]
        assert set(recovery["truth"]) == {"causal"}
        assert recovery["precision"].between(0, 1).all()
        single = pd.read_parquet(out / "causal_single.parquet")
        assert len(single) == summary["causal"]["candidates"] <= 12
        assert single["specific_drop"].is_monotonic_decreasing
    else:
        assert summary["recovery"] == []


def test_cli_compute_select_evaluate_apply(cache, tiny_folder, tmp_path, capsys):
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        # each its own process: LRP's patches stay there
        return subprocess.run(
            [sys.executable, "-m", "engine", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    files = []
    for seed, samples in ((0, "demo-general"), (1, "demo-general"), (0, "demo-trigger-prompts")):
        out = tmp_path / f"{samples}-{seed}.safetensors"
        done = cli(
            "attribution",
            "compute",
            "--method",
            "lrp",
            "--model",
            tiny_folder,
            "--samples",
            samples,
            "--limit",
            "3",
            "--seed",
            str(seed),
            "--max-length",
            "32",
            "--out",
            str(out),
            "--quiet",
        )
        assert done.returncode == 0, done.stderr
        assert "conservation" in done.stdout
        files.append(str(out))
    neurons = tmp_path / "neurons.json"
    assert (
        main(
            [
                "prune",
                "select",
                "--general",
                *files[:2],
                "--target",
                files[2],
                "--num-neurons",
                "5",
                "--out",
                str(neurons),
            ]
        )
        == 0
    )
    assert "5 neurons" in capsys.readouterr().out
    relevance = tmp_path / "relevance.json"
    assert (
        main(
            [
                "prune",
                "select",
                "--general",
                *files[:2],
                "--target",
                files[2],
                "--score",
                "relevance",
                "--num-neurons",
                "5",
                "--out",
                str(relevance),
            ]
        )
        == 0
    )
    assert json.loads(relevance.read_text())["metadata"]["score"] == "relevance"
    capsys.readouterr()
    assert (
        main(
            [
                "prune",
                "evaluate",
                "--model",
                tiny_folder,
                "--neurons",
                str(neurons),
                "--num",
                "0",
                "5",
                "--max-tokens",
                "64",
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["neurons"] for r in rows] == [0, 5]
    causal = tmp_path / "causal"
    assert (
        main(
            [
                "prune",
                "causal",
                "--model",
                tiny_folder,
                "--neurons",
                str(neurons),
                "--max-new-tokens",
                "4",
                "--out",
                str(causal),
                "--quiet",
            ]
        )
        == 0
    )
    assert "of 5 candidates form the causal set" in capsys.readouterr().out
    assert len(pd.read_parquet(causal / "causal_single.parquet")) == 5
    view = submit(
        "prune.causal",
        {
            "model": tiny_folder,
            "neurons": [str(neurons)],
            "planted": False,
            "max_new_tokens": 4,
            "top": 3,
        },
    )
    done = wait_job(view.id, timeout=300)
    assert done.status.state == "succeeded", done.status.message
    summary = json.loads((done.path / RESULT / "causal.json").read_text())
    assert summary["candidates"] == 3 and summary["batching_agreement"]["unablated"] == 1.0
    pruned = tmp_path / "pruned"
    assert (
        main(
            [
                "prune",
                "apply",
                "--model",
                tiny_folder,
                "--neurons",
                str(neurons),
                "--out",
                str(pruned),
            ]
        )
        == 0
    )
    from engine.attribution.pruning import load_neuron_list, pruning_mask
    from engine.models import load_model, next_token_logits

    listed, _ = load_neuron_list(neurons)
    original, saved = load_model(tiny_folder), load_model(str(pruned))
    masked = next_token_logits(original, "Hello there", mask=pruning_mask(listed))
    torch.testing.assert_close(next_token_logits(saved, "Hello there"), masked, rtol=0, atol=1e-5)
    assert (
        main(
            [
                "prune",
                "apply",
                "--model",
                tiny_folder,
                "--neurons",
                str(neurons),
                "--out",
                str(pruned),
            ]
        )
        == 1
    )
    assert "not empty" in capsys.readouterr().err
    assert (
        main(
            [
                "prune",
                "select",
                "--general",
                files[0],
                "--target",
                str(tmp_path / "x"),
                "--out",
                str(neurons),
            ]
        )
        == 1
    )
    assert "no attribution scores" in capsys.readouterr().err
