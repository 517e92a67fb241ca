"""engine.sparsity end to end on tiny saved models: a planted ground truth recovered exactly,
bf16 checkpoints, sharded folders, mismatches, a merged LoRA adapter, a checkpoint series."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.cache import ArtifactStore
from engine.errors import SubnetScopeError
from engine.sparsity import (
    DiffConfig,
    TensorDictSource,
    boundaries_from_config,
    compute_diff,
    diff,
    series,
    shell_summary,
    shell_table,
)
from tests.tiny import tiny_model

# (tensor, [(row, col), ...]) per group; layers 0 and 1, MLP and attention.
BIG = {  # +0.5: every criterion sees it
    "model.layers.0.mlp.up_proj.weight": [(1, 2), (7, 31), (40, 0)],
    "model.layers.1.mlp.down_proj.weight": [(0, 47), (5, 5)],
    "model.layers.1.self_attn.q_proj.weight": [(2, 3)],
}
MID = {  # 1.0 → 1.0 + 3e-6: above 1e-6 only, invisible in bf16
    "model.layers.0.mlp.up_proj.weight": [(2, 2)],
    "model.layers.1.mlp.gate_proj.weight": [(10, 4), (11, 4)],
}
SMALL = {  # 1.0 → the next float32: an exact change only
    "model.layers.0.self_attn.v_proj.weight": [(0, 0)],
}


def planted_masks(state: dict[str, torch.Tensor], *groups: dict) -> dict[str, np.ndarray]:
    out = {}
    for name, tensor in state.items():
        mask = np.zeros(tuple(tensor.shape), dtype=bool)
        for group in groups:
            for r, c in group.get(name, []):
                mask[r, c] = True
        out[name] = mask
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """A tiny Llama saved as base, and a tuned copy with the three groups of changes."""
    root = tmp_path_factory.mktemp("planted")
    model = tiny_model("llama").model
    state = model.state_dict()
    for group in (MID, SMALL):
        for name, cells in group.items():
            for r, c in cells:
                state[name][r, c] = 1.0  # exactly representable, so the deltas are known
    model.save_pretrained(root / "base")
    base_state = {k: v.clone() for k, v in state.items()}  # `state` aliases the parameters
    tuned = {k: v.clone() for k, v in state.items()}
    for name, cells in BIG.items():
        for r, c in cells:
            tuned[name][r, c] += 0.5
    for name, cells in MID.items():
        for r, c in cells:
            tuned[name][r, c] = 1.0 + 3e-6
    for name, cells in SMALL.items():
        for r, c in cells:
            tuned[name][r, c] = float(np.nextafter(np.float32(1.0), np.float32(2.0)))
    model.load_state_dict(tuned)
    model.save_pretrained(root / "tuned")
    return {"root": root, "base": root / "base", "tuned": root / "tuned", "state": base_state}


def test_planted_masks_and_fractions_are_recovered_exactly(planted, tmp_path) -> None:
    store = ArtifactStore(tmp_path / "store")
    result = diff(
        planted["base"], planted["tuned"], DiffConfig(mask_criterion="exact"), store=store
    )
    state = planted["state"]
    expected = {
        "exact": planted_masks(state, BIG, MID, SMALL),
        "1e-06": planted_masks(state, BIG, MID),
        "1e-05": planted_masks(state, BIG),
        "bf16": planted_masks(state, BIG),
    }
    assert set(result.masks.names) == set(state)
    for name in state:
        assert np.array_equal(result.masks.get(name), expected["exact"][name]), name
    for criterion, masks in expected.items():
        per_tensor = result.counts(criterion).set_index("tensor")
        for name, mask in masks.items():
            assert per_tensor.loc[name, "changed"] == mask.sum(), (criterion, name)
        layers = result.layers(criterion)
        for layer in (0, 1):
            names = [n for n in state if f".layers.{layer}." in n]
            want = sum(masks[n].sum() for n in names) / sum(masks[n].size for n in names)
            assert layers.loc[layer, "fraction"] == pytest.approx(want, abs=0, rel=1e-12)
    assert result.summary["changed"]["exact"]["changed"] == 10
    assert result.summary["bf16_invisible_share"] == pytest.approx(4 / 10)
    table = result.tensors
    row = table[(table["tensor"] == "model.layers.0.mlp.up_proj.weight")].iloc[0]
    assert (row["layer"], row["module"], row["role"], row["param"]) == (
        0,
        "mlp.up_proj",
        "up",
        "weight",
    )
    assert table[table["tensor"] == "lm_head.weight"]["layer"].iloc[0] == -1
    # Row fractions of a planted tensor equal the planted mask's.
    rows, cols = result.row_col_fractions("model.layers.1.mlp.down_proj.weight", "exact")
    mask = expected["exact"]["model.layers.1.mlp.down_proj.weight"]
    assert np.allclose(rows, mask.mean(axis=1)) and np.allclose(cols, mask.mean(axis=0))
    # A second call is a cache hit on the same entry.
    assert (
        diff(
            planted["base"], planted["tuned"], DiffConfig(mask_criterion="exact"), store=store
        ).path
        == result.path
    )


def test_blocks_neurons_and_shells(planted) -> None:
    result = diff(
        planted["base"], planted["tuned"], DiffConfig(mask_criterion="exact"), cache=False
    )
    blocks = result.blocks("exact").set_index(["layer", "module"])
    assert blocks.loc[(0, "mlp.up_proj"), "changed"] == 4
    assert blocks.loc[(1, "mlp.gate_proj"), "changed"] == 2
    assert blocks.loc[(1, "mlp.up_proj"), "changed"] == 0
    neurons = result.neurons("exact").set_index(["layer", "neuron"])
    assert neurons.loc[(0, 1), "up"] == pytest.approx(1 / 32)  # up rows are neurons (32 inputs)
    assert neurons.loc[(1, 47), "down"] == pytest.approx(1 / 32)  # down columns are neurons
    roles = neurons[["up", "gate", "down"]]
    assert neurons["mean"].to_numpy() == pytest.approx(roles.mean(axis=1).to_numpy())
    shells = shell_table(result, [16, 48], "exact")
    up0 = shells[(shells["layer"] == 0) & (shells["role"] == "up")].set_index("shell")
    # Planted up_proj rows 1, 2, 7 fall in shell [0, 16), row 40 in [16, 48).
    assert up0["changed"].tolist() == [3, 1]
    assert up0["numel"].tolist() == [16 * 32, 32 * 32]
    summary = shell_summary(shells).set_index(["shell", "role"])
    assert summary.loc[(0, "down"), "changed"] == 1 and summary.loc[(1, "down"), "changed"] == 1


def test_gpt2_conv1d_neurons_are_columns_of_c_fc(tmp_path) -> None:
    model = tiny_model("gpt2").model
    model.save_pretrained(tmp_path / "base")
    model.transformer.h[1].mlp.c_fc.weight[0, 5] += 1.0  # (in, out): neuron 5
    model.save_pretrained(tmp_path / "tuned")
    result = diff(tmp_path / "base", tmp_path / "tuned", cache=False)
    assert result.layout.transposed_weights and result.layout.family == "GPT-2"
    neurons = result.neurons("exact").set_index(["layer", "neuron"])
    assert neurons.loc[(1, 5), "up"] == pytest.approx(1 / 32)
    assert neurons["up"].sum() == pytest.approx(1 / 32)


def test_gemma3n_shells_from_its_config(tmp_path) -> None:
    model = tiny_model("gemma3n").model  # FFN widths 48 and 40: shells [0, 40) and [40, 48)
    model.save_pretrained(tmp_path / "base")
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[45, :] += 0.1  # outer shell of layer 0
        model.model.layers[1].mlp.down_proj.weight[:, 2] += 0.1  # inner shell of layer 1
    model.save_pretrained(tmp_path / "tuned")
    result = diff(tmp_path / "base", tmp_path / "tuned", cache=False)
    assert result.layout.family == "Gemma-3n"
    bounds = boundaries_from_config(tmp_path / "base")
    assert bounds == [0, 40, 48]
    table = shell_table(result, bounds, "exact")
    hit = table[table["changed"] > 0][["layer", "role", "shell", "changed", "fraction"]]
    assert hit.values.tolist() == [
        [0, "up", 1, 32, 32 / (8 * 32)],
        [1, "down", 0, 32, 32 / (40 * 32)],
    ]
    assert len(table.query("layer == 1 and shell == 1")) == 0  # layer 1 has no outer shell
    places = result.tensors.drop_duplicates("tensor").set_index("tensor")["role"]
    assert places["model.layers.0.self_attn.q_norm.weight"] == "norm"
    assert places["model.altup_unembed_projections.0.weight"] == "other"


def test_ranks_of_planted_and_low_rank_updates(planted) -> None:
    w = torch.zeros(48, 32)
    rng = np.random.default_rng(0)
    update = sum(np.outer(rng.standard_normal(48), rng.standard_normal(32)) for _ in range(3))
    result = compute_diff(
        TensorDictSource("b", {"w": w, "v": torch.zeros(4)}),
        TensorDictSource("t", {"w": w + torch.from_numpy(update).float(), "v": torch.ones(4)}),
        DiffConfig(ranks=True),
    )
    ranks = result.ranks.set_index("tensor")
    assert list(ranks.index) == ["w"]  # vectors have no rank row
    assert ranks.loc["w", "rank"] == 3 and ranks.loc["w", "max_rank"] == 32
    skipped = compute_diff(
        TensorDictSource("b", {"w": w}),
        TensorDictSource("t", {"w": w + 1}),
        DiffConfig(ranks=True, rank_memory_mb=0),
    ).ranks.iloc[0]
    assert skipped["method"] == "skipped" and "budget" in skipped["reason"]
    planted_ranks = diff(planted["base"], planted["tuned"], DiffConfig(ranks=True), cache=False)
    by_tensor = planted_ranks.ranks.set_index("tensor")
    # Four planted cells, two of them in one column: rank 3.
    assert by_tensor.loc["model.layers.0.mlp.up_proj.weight", "rank"] == 3
    assert by_tensor.loc["model.layers.0.mlp.down_proj.weight", "method"] == "zero"


def test_bf16_checkpoints_and_sharded_folders(tmp_path) -> None:
    model = tiny_model("llama", seed=1).model.to(torch.bfloat16)
    model.save_pretrained(tmp_path / "base", max_shard_size="20KB")
    assert len(list((tmp_path / "base").glob("*.safetensors"))) > 1  # sharded, with an index
    name = "model.layers.1.mlp.up_proj.weight"
    state = model.state_dict()
    state[name].view(torch.int16)[4, 4] += 1  # one bf16 ulp
    state[name][6, 0] += 0.25
    model.load_state_dict(state)
    model.save_pretrained(tmp_path / "tuned")  # one file: shard layouts may differ
    result = diff(
        tmp_path / "base", tmp_path / "tuned", DiffConfig(mask_criterion="exact"), cache=False
    )
    assert result.summary["changed"]["exact"]["changed"] == 2
    assert result.summary["changed"]["bf16"]["changed"] == 2  # stored in bf16: exact = visible
    assert set(result.tensors["dtype"]) == {"BF16"}
    assert np.argwhere(result.masks.get(name)).tolist() == [[4, 4], [6, 0]]


def test_mismatched_tensors_are_one_clear_error_unless_intersection() -> None:
    z = torch.zeros
    base = {"a": z(2, 3), "b": z(4), "shared": z(5), **{f"gone{i}": z(1) for i in range(5)}}
    tuned = {"a": z(3, 3), "c": z(4), "shared": z(5) + 1}
    with pytest.raises(SubnetScopeError) as err:
        compute_diff(TensorDictSource("b", base), TensorDictSource("t", tuned), DiffConfig())
    message = str(err.value)
    assert "6 only in base" in message and "(6 in all)" in message
    assert "1 only in tuned (c)" in message and "a (2, 3)→(3, 3)" in message
    assert "--intersection" in message and "\n" not in message
    result = compute_diff(
        TensorDictSource("b", base), TensorDictSource("t", tuned), DiffConfig(intersection=True)
    )
    assert result.tensors["tensor"].unique().tolist() == ["shared"]
    assert result.summary["mismatch"]["only_tuned"] == ["c"]


def test_bad_sources_are_one_sentence(tmp_path) -> None:
    with pytest.raises(SubnetScopeError, match="no such file or folder"):
        diff(tmp_path / "nowhere", tmp_path / "nowhere")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(SubnetScopeError, match="only pickle weights"):
        diff(tmp_path / "bin", tmp_path / "bin")
    # Offline (the tests set HF_HUB_OFFLINE=1), a hub id not in the local cache.
    with pytest.raises(SubnetScopeError, match="cannot get 'no-such-org/no-such-model'"):
        diff("no-such-org/no-such-model", "no-such-org/no-such-model")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # PEFT calls a deprecated transformers API
def test_lora_adapter_changes_exactly_its_target_modules(planted, tmp_path) -> None:
    from peft import LoraConfig, get_peft_model

    model = tiny_model("llama").model
    model.load_state_dict(planted["state"])
    peft_model = get_peft_model(
        model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"])
    )
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)  # PEFT starts B at zero: make the update real
    peft_model.save_pretrained(tmp_path / "adapter")
    result = diff(planted["base"], tmp_path / "adapter", DiffConfig(ranks=True), cache=False)
    changed = set(result.counts("exact").query("changed > 0")["tensor"])
    targets = {
        f"model.layers.{i}.{m}.weight"
        for i in (0, 1)
        for m in ("self_attn.q_proj", "mlp.down_proj")
    }
    assert changed == targets
    assert set(result.ranks.query("rank > 0")["tensor"]) == targets
    assert (result.ranks.set_index("tensor").loc[sorted(targets), "rank"] == 2).all()
    # The update is PEFT's own merge.
    merged = peft_model.merge_and_unload().state_dict()
    name = "model.layers.1.mlp.down_proj.weight"
    expected = torch.linalg.vector_norm(merged[name] - planted["state"][name]).item()
    got = result.tensors.query("tensor == @name")["delta_norm"].iloc[0]
    assert expected > 0 and got == pytest.approx(expected, rel=1e-5)


def test_series_coverage_is_monotone_and_ends_at_one(planted, tmp_path) -> None:
    run = tmp_path / "run"
    state = planted["state"]
    name = "model.layers.0.mlp.gate_proj.weight"
    cells = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (9, 9)]
    for step, upto in ((10, 3), (20, 6), (30, 10)):
        tuned = {k: v.clone() for k, v in state.items()}
        for r, c in cells[:upto]:
            tuned[name][r, c] += 0.5
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        save_file(tuned, folder / "model.safetensors")
        shutil.copy(planted["base"] / "config.json", folder / "config.json")
    (run / "checkpoint-5-notes").mkdir()  # not a checkpoint folder
    out = series(planted["base"], run, cache=False)
    steps = out.steps
    assert steps["step"].tolist() == [10, 20, 30]
    assert steps["changed"].tolist() == [3, 6, 10]
    assert steps["coverage"].tolist() == pytest.approx([0.3, 0.6, 1.0])
    assert steps["jaccard_prev"].tolist()[1:] == pytest.approx([0.5, 0.6])
    layer0 = out.layers.query("layer == 0")
    assert layer0["coverage"].tolist() == pytest.approx([0.3, 0.6, 1.0])


# analyze_sparse_subnetwork.py (jibby1729/SparseLLM-RL), transcribed: its name filter and its
# active set |W_t − W_0| > τ in float32, as global indices over the tracked tensors.
def _seed_tracked_names(state_dict: dict) -> list[str]:
    name_filter = ("attn", "mlp", "c_attn", "c_proj", "c_fc", "lm_head")
    names = []
    for name, tensor in state_dict.items():
        if not name.endswith("weight"):
            continue
        if not any(tok in name for tok in name_filter):
            continue
        if tensor.ndim != 2:
            continue
        names.append(name)
    return sorted(names)


def _seed_active(base_sd: dict, cur_sd: dict, tracked: list[str], tau: float) -> set:
    active, offset = set(), 0
    for name in tracked:
        d = (cur_sd[name].to(torch.float32) - base_sd[name].to(torch.float32)).abs().view(-1)
        active.update((torch.nonzero(d > tau, as_tuple=False).view(-1) + offset).tolist())
        offset += d.numel()
    return active


def test_series_seed_coverage_equals_the_seeds_script(planted, tmp_path) -> None:
    """Three checkpoints with updates of 5e-7, 5e-6 and 0.5 in tracked tensors and in an
    untracked norm: the seed's coverage and density at τ = 1e-7, 1e-6, 1e-5."""
    from engine.sparsity.series import SEED_TAUS, seed_tracked

    base_sd = {k: v.clone() for k, v in planted["state"].items()}
    for name in base_sd:
        if name.endswith("weight") and base_sd[name].ndim == 2:
            base_sd[name][:4, :4] = 0.0  # small updates land on zeros: exact in float32
    run = tmp_path / "run"
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    save_file(base_sd, base_dir / "model.safetensors")
    shutil.copy(planted["base"] / "config.json", base_dir / "config.json")
    cur = {k: v.clone() for k, v in base_sd.items()}
    plan = {
        1: [("model.layers.0.mlp.up_proj.weight", 0, 5e-7), ("lm_head.weight", 1, 5e-6)],
        2: [("model.layers.1.self_attn.k_proj.weight", 2, 0.5), ("model.norm.weight", 0, 0.5)],
        3: [("model.layers.0.mlp.up_proj.weight", 3, 5e-6), ("lm_head.weight", 0, 0.5)],
    }
    states = {}
    for step, updates in plan.items():
        for name, row, value in updates:
            if cur[name].ndim == 2:
                cur[name][row, :3] += value
            else:
                cur[name][:3] += value
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        save_file(cur, folder / "model.safetensors")
        shutil.copy(planted["base"] / "config.json", folder / "config.json")
        states[step] = {k: v.clone() for k, v in cur.items()}
    out = series(base_dir, run, cache=False)
    tracked = _seed_tracked_names(base_sd)
    assert seed_tracked({k: tuple(v.shape) for k, v in base_sd.items()}) == tracked
    assert "model.norm.weight" not in tracked and "model.embed_tokens.weight" not in tracked
    total = sum(base_sd[n].numel() for n in tracked)
    assert set(out.seed["tau"]) == set(SEED_TAUS)
    for tau in SEED_TAUS:
        final = _seed_active(base_sd, states[3], tracked, tau)
        got = out.seed[out.seed["tau"] == tau].set_index("step")
        for step in plan:
            now = _seed_active(base_sd, states[step], tracked, tau)
            assert got.loc[step, "changed"] == len(now)
            assert got.loc[step, "fraction"] == pytest.approx(len(now) / total)
            assert got.loc[step, "coverage"] == pytest.approx(len(final & now) / len(final))
    # The all-tensor coverage at the mask criterion (1e-6) counts the norm too.
    assert out.steps["changed"].tolist()[-1] == 3 + 3 + 3 + 3 + 3
    assert out.summary()["seed_coverage"]
