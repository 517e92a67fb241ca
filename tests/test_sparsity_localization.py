"""Seed 000's localization basis against a transcription of SparseLLM-RL's utils.py.

The functions under "transcription" restate, step by step, what the seed's `main_ppo.py` logs as
`localization/*`: `get_layer_rank_stats` (2-D `…weight` parameters whose names hold a token of the
model's name filter, ΔW = W − W₀, ‖ΔW‖_F in float32), `compute_layer_update_distribution` (those
norms, one value per tensor) and the Gini / entropy / top-k functions with their 1e-10 terms and
their 0.0 for an all-zero update. They run on live tiny models with planted updates; the engine
diffs the same models saved to disk and must give the same numbers (the Gini up to its documented
n/(n−1) scaling, reported unscaled as `gini_unscaled`).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from engine.sparsity import DiffConfig, compare_runs, diff
from engine.sparsity.localization import BASES, BLOCK_CHANGED, TENSOR_FRO
from engine.sparsity.result import SUMMARY, DiffResult
from tests.tiny import tiny_model

# --- transcription of the seed (SparseLLM-RL utils.py, configs/gemma3n_config.py) --------------
GPT2_FILTER = ("attn", "mlp", "c_attn", "c_proj", "c_fc", "lm_head")
GEMMA_FILTER = (
    "self_attn",
    "mlp",
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
)


def seed_name_filter(model_name: str) -> tuple[str, ...]:
    """get_model_config: Gemma-3 / 3n names get the Gemma filter, anything else GPT-2's."""
    return GEMMA_FILTER if "gemma-3" in model_name.lower() else GPT2_FILTER


def seed_layer_stats(model, init_state, name_filter, tolerance=1e-5) -> dict[str, dict]:
    stats = {}
    for name, param in model.named_parameters():
        if not name.endswith("weight") or not any(s in name for s in name_filter):
            continue
        if param.dim() != 2 or name not in init_state:
            continue
        d_w = param.detach().cpu() - init_state[name]
        stats[name] = {
            "fro_norm": float(torch.linalg.norm(d_w.to(torch.float32))),
            "percent_updated": torch.mean((d_w.abs().float() > tolerance).float()).item(),
        }
    return stats


def seed_gini(updates: dict[str, float]) -> float:
    v = np.array(list(updates.values()))
    if len(v) == 0 or v.sum() == 0:
        return 0.0
    v = np.sort(v)
    n = len(v)
    return float(2 * np.sum(np.arange(1, n + 1) * v) / (n * np.sum(v)) - (n + 1) / n)


def seed_entropy(updates: dict[str, float]) -> float:
    v = np.array(list(updates.values()))
    if len(v) == 0 or v.sum() == 0:
        return 0.0
    p = v / (v.sum() + 1e-10)
    h = -np.sum(p * np.log(p + 1e-10))
    top = np.log(len(v))
    return float(h / top) if top > 0 else 0.0


def seed_topk(updates: dict[str, float], k: int = 3) -> float:
    v = np.array(list(updates.values()))
    if len(v) == 0 or v.sum() == 0:
        return 0.0
    return float(np.sort(v)[-k:].sum() / (v.sum() + 1e-10))


def seed_localization(stats: dict[str, dict], k: int = 3) -> dict[str, float]:
    updates = {name: s["fro_norm"] for name, s in stats.items()}
    return {
        "gini": seed_gini(updates),
        "entropy": seed_entropy(updates),
        "topk_concentration": seed_topk(updates, k),
        "num_active_layers": sum(1 for v in updates.values() if v > 1e-10),
        "total_layers": len(updates),
    }


# --- planted runs ---------------------------------------------------------------------------------
SEED_NAMES = {"llama": "llama-tiny", "gpt2": "gpt2-tiny", "gemma3n": "google/gemma-3n-tiny"}


def _planted(family: str, root, seed: int = 0):
    """Base and tuned folders, the live tuned model and the base's parameters (init_state).

    Updates of very different sizes land in some tracked tensors, and also in the embedding and
    in norms, which the seed does not track: counting them would change every number."""
    model = tiny_model(family, seed).model.requires_grad_(True)
    init = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.save_pretrained(root / "base")
    rng = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for i, (name, p) in enumerate(params.items()):
            if p.dim() == 2 and i % 3 == 0:  # every third matrix, tracked or not
                rows = max(1, p.shape[0] // (i % 5 + 1))
                scale = 10.0 ** -(i % 4)  # 1, 0.1, 0.01, 0.001
                p[:rows] += scale * torch.randn(p[:rows].shape, generator=rng)
            elif p.dim() == 1 and "norm" in name:
                p += 0.5
    model.save_pretrained(root / "tuned")
    return root / "base", root / "tuned", model, init


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3n"])
def test_seed_basis_equals_the_seeds_functions(family, tmp_path) -> None:
    base, tuned, model, init = _planted(family, tmp_path)
    stats = seed_layer_stats(model, init, seed_name_filter(SEED_NAMES[family]))
    expected = seed_localization(stats)
    result = diff(base, tuned, DiffConfig(), cache=False)
    got = result.summary["localization_seed"]
    assert got["basis"] == TENSOR_FRO
    assert got["n"] == expected["total_layers"] == len(stats)
    assert got["active"] == expected["num_active_layers"]
    assert 0 < got["active"] < got["n"]  # some tracked tensors moved, some did not
    assert got["gini_unscaled"] == pytest.approx(expected["gini"], rel=1e-6)
    assert got["gini"] == pytest.approx(expected["gini"] * got["n"] / (got["n"] - 1), rel=1e-6)
    assert got["entropy"] == pytest.approx(expected["entropy"], rel=1e-6)
    assert got["top_k"] == pytest.approx(expected["topk_concentration"], rel=1e-6)
    # The same numbers from the result's method, and the per-block basis stays labelled apart.
    assert result.localization(basis=TENSOR_FRO) == got
    assert result.summary["localization"]["basis"] == BLOCK_CHANGED
    assert result.localization()["gini"] == result.summary["localization"]["gini"]
    assert set(BASES) == {BLOCK_CHANGED, TENSOR_FRO}


def test_tied_lm_head_is_not_tracked_and_untied_is(tmp_path) -> None:
    """named_parameters lists a tied lm_head once, as the embedding (not tracked); safetensors
    saves drop it too. An untied lm_head (tiny Llama) is tracked."""
    gpt2 = diff(*_planted("gpt2", tmp_path / "g")[:2], DiffConfig(), cache=False)
    llama = diff(*_planted("llama", tmp_path / "l")[:2], DiffConfig(), cache=False)
    # GPT-2: 2 blocks × (c_attn, attn.c_proj, c_fc, mlp.c_proj); Llama: 2 × 7 + lm_head.
    assert gpt2.summary["localization_seed"]["n"] == 8
    assert llama.summary["localization_seed"]["n"] == 15


def test_all_zero_update_is_nan_where_the_seed_says_zero(tmp_path) -> None:
    model = tiny_model("llama").model.requires_grad_(True)
    init = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
    model.save_pretrained(tmp_path / "base")
    expected = seed_localization(seed_layer_stats(model, init, GPT2_FILTER))
    assert expected["gini"] == expected["entropy"] == expected["topk_concentration"] == 0.0
    got = diff(tmp_path / "base", tmp_path / "base", DiffConfig(), cache=False)
    seed = got.summary["localization_seed"]
    assert seed["n"] == expected["total_layers"] and seed["active"] == 0
    assert all(math.isnan(seed[m]) for m in ("gini", "gini_unscaled", "entropy", "top_k"))


def test_old_cached_results_get_the_seed_basis_on_load(tmp_path) -> None:
    base, tuned, _, _ = _planted("llama", tmp_path)
    result = diff(base, tuned, DiffConfig(), cache=False)
    result.save(tmp_path / "saved")
    summary = json.loads((tmp_path / "saved" / SUMMARY).read_text())
    expected = summary.pop("localization_seed")
    (tmp_path / "saved" / SUMMARY).write_text(json.dumps(summary))
    loaded = DiffResult.load(tmp_path / "saved")
    assert loaded.summary["localization_seed"] == pytest.approx(expected)


def test_compare_runs_reports_the_seed_basis_beside_the_blocks(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    base, tuned, _, _ = _planted("llama", tmp_path)
    result = compare_runs([f"a={base}:{tuned}"], DiffConfig())
    row = result.metrics.iloc[0]
    seed = diff(base, tuned, DiffConfig()).summary["localization_seed"]
    assert row["seed_tensors"] == seed["n"]
    for name in ("gini", "gini_unscaled", "entropy", "top_k"):
        assert row[f"seed_{name}"] == pytest.approx(seed[name])
    assert row["gini"] != pytest.approx(row["seed_gini"])  # two bases, two answers


def test_unknown_basis_is_one_clear_error(tmp_path) -> None:
    from engine.errors import SubnetScopeError

    base, tuned, _, _ = _planted("llama", tmp_path)
    with pytest.raises(SubnetScopeError, match="tensor_fro"):
        diff(base, tuned, DiffConfig(), cache=False).localization(basis="fro")
