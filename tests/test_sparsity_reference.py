"""The diff's reference mode against a transcription of the seed's check_sparsity.py.

`check_sparsity` below transcribes sparsity_in_rl/check_sparsity.py (SagnikMukherjee/sparsity_in_rl,
the script seed 000 runs) as it is: models loaded by `AutoModelForCausalLM.from_pretrained` in the
script's default bfloat16, deltas over `named_parameters`, the same prints. It runs on tiny saved
checkpoints (fp32 and bf16) with planted changes, and the engine's reference mode must give the
same numbers: to the last bit for the counts, and line for line in the script's print format.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.sparsity import DiffConfig, diff
from engine.sparsity.reference import script_report
from tests.tiny import tiny_model


# --- the transcription (kept as the script has it; only the prints are also returned) ----------
def _load_model(model_path, dtype, device_map, cache_dir):
    return AutoModelForCausalLM.from_pretrained(
        model_path, torch_dtype=dtype, device_map=device_map, cache_dir=cache_dir
    )


def _compute_deltas(sft_model, rl_model):
    rl_state_dict = rl_model.state_dict()
    sft_state_dict = sft_model.state_dict()
    all_deltas = []
    num_nonzero_dict = {}
    with torch.no_grad():
        for name, _param_sft in sft_model.named_parameters():
            delta = rl_state_dict[name] - sft_state_dict[name]
            num_nonzero = (delta != 0).sum().item()
            num_nonzero_dict[name] = num_nonzero / delta.numel()
            all_deltas.append(delta.view(-1))
    return all_deltas, num_nonzero_dict


def _compute_layerwise_sparsity(num_nonzero_dict, out):
    layerwise_sparsity = {}
    for key in num_nonzero_dict:
        if key.startswith("model.layers"):
            layer = key.split(".")[2]
            layerwise_sparsity.setdefault(layer, []).append(num_nonzero_dict[key])
    layerwise_sparsity = {
        layer: sum(vals) / len(vals) for layer, vals in layerwise_sparsity.items()
    }
    out.append("")
    out.append("Layer-wise sparsity:")
    for layer, sparsity in sorted(layerwise_sparsity.items(), key=lambda x: int(x[0])):
        out.append(f"Layer {layer}: {sparsity:.4f}")
    return layerwise_sparsity


def check_sparsity(sft, rl, tolerances, torch_dtype="bfloat16") -> dict:
    out: list[str] = []
    dtype = getattr(torch, torch_dtype)
    model_sft = _load_model(sft, dtype, "cpu", None)
    model_rl = _load_model(rl, dtype, "cpu", None)
    all_deltas, num_nonzero_dict = _compute_deltas(model_sft, model_rl)
    all_deltas_tensor = torch.cat(all_deltas, dim=0)
    pct_zeros = (all_deltas_tensor == 0).sum().item() / len(all_deltas_tensor)
    out.append(f"Percentage of 0 values in the task vector: {pct_zeros:.4f}")
    zero_tensor = torch.zeros_like(all_deltas_tensor)
    close = {}
    for tol in tolerances:
        fraction_close_to_zero = (
            torch.isclose(all_deltas_tensor, zero_tensor, atol=tol).sum().item()
            / all_deltas_tensor.numel()
        )
        close[tol] = fraction_close_to_zero
        out.append(f"Tolerance = {tol:.0e} -> Fraction close to zero: {fraction_close_to_zero:.4f}")
    layers = _compute_layerwise_sparsity(num_nonzero_dict, out)
    return {
        "pct_zeros": pct_zeros,
        "close": close,
        "layers": layers,
        "per_tensor": num_nonzero_dict,
        "printed": "\n".join(out),
    }


# --- planted checkpoints -------------------------------------------------------------------------
UP = "model.layers.0.mlp.up_proj.weight"
Q = "model.layers.1.self_attn.q_proj.weight"
DOWN = "model.layers.1.mlp.down_proj.weight"
BF16_TAU = torch.tensor(1e-5, dtype=torch.bfloat16).item()  # 1.00136e-5: isclose's bf16 bound


def _plant(model) -> None:
    """Changes each criterion tells apart: large ones, ones a bf16 cast erases, and deltas at
    the bf16 rounding of τ = 1e-5 (close for isclose in bf16, above 1e-5 in exact arithmetic)."""
    state = model.state_dict()
    with torch.no_grad():
        state[UP][0:3, :5] += 0.5
        state[Q][0, :4] = 1.0 + 3e-6  # base set to 1.0 below: invisible once cast to bf16
        state[DOWN][2, :6] = BF16_TAU  # base set to 0.0 below
        state[DOWN][3, :2] = 2 * BF16_TAU


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def pair(request, tmp_path_factory):
    """base/ and tuned/ of a tiny Llama stored in `param` dtype, with the planted changes."""
    root = tmp_path_factory.mktemp(f"ref-{request.param}")
    dtype = getattr(torch, request.param)
    model = tiny_model("llama").model.to(dtype)
    state = model.state_dict()
    with torch.no_grad():
        state[Q][0, :4] = 1.0
        state[DOWN][2:4, :6] = 0.0
    model.save_pretrained(root / "base")
    _plant(model)
    model.save_pretrained(root / "tuned")
    return root / "base", root / "tuned", request.param


TAUS = (1e-5, 1e-6, 1e-7)


@pytest.fixture(scope="module")
def both(pair):
    base, tuned, stored = pair
    script = check_sparsity(str(base), str(tuned), list(TAUS))
    ours = diff(base, tuned, DiffConfig(tolerances=TAUS, reference=True), cache=False)
    return script, ours, stored


def test_reference_counts_equal_the_script(both) -> None:
    script, ours, _ = both
    ref = ours.summary["reference"]
    assert ref["dtype"] == "bfloat16"
    assert ref["zero_fraction"] == script["pct_zeros"]  # same integer counts, same division
    for tau in TAUS:
        assert ref["close_fraction"][f"{tau:g}"] == script["close"][tau]
        assert ref["changed_fraction"][f"{tau:g}"] == pytest.approx(1 - script["close"][tau])
    assert list(ref["layers"]) == sorted(script["layers"], key=int)
    for layer, value in script["layers"].items():
        assert ref["layers"][layer] == pytest.approx(value, rel=1e-12, abs=0)  # summation order
    per_tensor = ours.reference.set_index("tensor")["nonzero_fraction"].to_dict()
    assert per_tensor == pytest.approx(script["per_tensor"], rel=0, abs=0)
    assert ref["numel"] == sum(p.numel() for p in tiny_model("llama").model.parameters())


def test_reference_prints_what_the_script_prints(both) -> None:
    script, ours, _ = both
    assert script_report(ours.summary["reference"]) == script["printed"]


def test_planted_cases_tell_the_criteria_apart(both) -> None:
    """The bf16 cast erases the 3e-6 steps at 1.0; isclose in bf16 counts |Δ| = bf16(1e-5) as
    close; the diff's own τ criterion (|Δ| > τ in the stored dtype's float32) does not."""
    _, ours, stored = both
    ref = ours.reference.set_index("tensor")
    assert ref.loc[Q, "zeros"] == ref.loc[Q, "numel"]  # erased by the cast, in either dtype
    q_exact = ours.counts("exact").set_index("tensor").loc[Q, "changed"]
    assert q_exact == (4 if stored == "float32" else 0)  # a bf16 file cannot hold 1 + 3e-6
    close = ref.loc[DOWN, "close_1e-05"]
    down_numel = ref.loc[DOWN, "numel"]
    nonzero = down_numel - ref.loc[DOWN, "zeros"]
    assert nonzero == 8
    assert close == down_numel - 2  # the six at bf16(1e-5) count as close, the 2·bf16(1e-5) not
    ours_1e5 = ours.counts(1e-5).set_index("tensor").loc[DOWN, "changed"]
    assert ours_1e5 == 8  # |Δ| > 1e-5 holds for all eight in exact arithmetic


def test_reference_is_cached_apart_and_reloads(pair, tmp_path) -> None:
    from engine.cache import ArtifactStore

    base, tuned, _ = pair
    store = ArtifactStore(tmp_path / "cache")
    plain = diff(base, tuned, DiffConfig(), store=store)
    with_ref = diff(base, tuned, DiffConfig(reference=True), store=store)
    assert "reference" not in plain.summary and plain.reference is None
    assert with_ref.path != plain.path
    assert with_ref.reference is not None and len(with_ref.reference) == len(plain.tensors) // 2
    assert "reference" not in DiffConfig().cache_params()  # earlier cache keys unchanged


def test_gpt2_names_give_the_script_no_layers(tmp_path) -> None:
    model = tiny_model("gpt2").model
    model.save_pretrained(tmp_path / "base")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(tmp_path / "tuned")
    ours = diff(tmp_path / "base", tmp_path / "tuned", DiffConfig(reference=True), cache=False)
    ref = ours.summary["reference"]
    assert ref["layers"] == {} and "model.layers" in ref["note"]
    assert not math.isnan(ref["zero_fraction"])


def test_unknown_reference_dtype_is_one_error() -> None:
    from engine.errors import SubnetScopeError

    with pytest.raises(SubnetScopeError, match="reference dtype"):
        DiffConfig(reference=True, reference_dtype="int8")


def test_diff_job_takes_the_reference_params(pair, ctx) -> None:
    import json

    from engine.sparsity.jobs import sparsity_diff

    base, tuned, _ = pair
    params = {
        "base": str(base),
        "tuned": str(tuned),
        "tolerances": [1e-5],
        "reference": True,
        "mask_criterion": "auto",
        "ranks": False,
        "intersection": False,
    }
    out = sparsity_diff(params, ctx)
    assert out["reference"]["dtype"] == "bfloat16"
    events = [json.loads(line) for line in (ctx.job_dir / "events.jsonl").read_text().splitlines()]
    names = {e.get("name") for e in events}
    assert "reference_fraction/1e-05" in names


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_fast_delta_and_bound_equal_torchs_own_ops(dtype) -> None:
    """The engine's float32 route equals `t.to(dtype) - b.to(dtype)` and torch.isclose on it,
    on weights of every magnitude, tiny and huge updates, ±0, ±inf and NaN."""
    from engine.sparsity.reference import isclose_bound, script_delta

    gen = torch.Generator().manual_seed(0)
    n = 200_000
    scale = torch.exp2(torch.randint(-30, 12, (n,), generator=gen).float())
    b = torch.randn(n, generator=gen) * scale
    step = torch.randn(n, generator=gen) * torch.exp2(torch.randint(-40, 4, (n,), generator=gen))
    t = b + step * (torch.rand(n, generator=gen) < 0.5)
    specials = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-5, 1e30])
    b[:7], t[:7] = specials, specials.flip(0)
    b[7:14], t[7:14] = specials, specials
    expected = t.to(dtype) - b.to(dtype)
    got = script_delta(b, t, dtype)
    assert torch.equal(got.isnan(), expected.float().isnan())
    finite = ~got.isnan()
    assert torch.equal(got[finite], expected.float()[finite])
    zero = torch.zeros_like(expected)
    for tau in (1e-5, 1e-6, 1e-7, 0.0):
        want = torch.isclose(expected, zero, atol=tau)
        assert torch.equal(got.abs() <= isclose_bound(tau, dtype), want), tau
