"""The sparsity view's pickers: the tuned weights or run (preselected from the URL), tolerances,
criterion and a training run's options, which choose what the panels show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from dashboard.sources import ignored_link, local_choices
from dashboard.stamps import path_stamp
from dashboard.views.sparsity.loaders import stored_precision
from engine.errors import SubnetScopeError
from engine.jobs import RESULT, JobView, get_job, list_jobs, load_kinds, parse_params
from engine.sparsity import (
    BF16,
    EXACT,
    SCRIPT,
    DiffConfig,
    download_hub_weights,
    hub_cached,
    list_checkpoints,
    opening_criterion,
    tolerance_key,
)

TRAIN_KINDS = {"train.sft": "SFT", "train.grpo": "GRPO", "train.ppo": "PPO"}
RUN_KEY = "sparsity_run"  # the run picker's key; `?job=<id>` preselects it
MODE_KEY = "sparsity_tuned_mode"
MODES = ("Model folder", "Path", "Run checkpoints")
FOLDER = "Folder…"  # the run picker's option for a run folder typed in
CRITERIA = {"τ": None, "exact": EXACT, "bf16-visible": BF16}
CRITERION_KEY = "sparsity_criterion"
PICKED_KEY = "sparsity_picked"  # (base, tuned) the sidebar picked, for the opening criterion
OPENED_FOR = "sparsity_criterion_opened_for"  # the precision the criterion last opened on


@dataclass(frozen=True)
class Tuned:
    """What the sidebar picked: the tuned weights, and the run folder when it is a series."""

    tuned: str | None
    run_dir: str | None = None
    base: str | None = None  # a run's own base/ folder: its weights before training


def run_base(run_dir: str) -> str | None:
    """The run's `base/` folder when it holds a model: the weights before training, saved by a
    training job in the run's own precision and tensor names."""
    folder = Path(run_dir) / "base"
    return str(folder) if (folder / "config.json").is_file() else None


def diff_base(base: str | None, tuned: Tuned) -> str | None:
    """What the tuned weights are diffed against, said on the page: a run's checkpoints against
    the run's own base/ when it has one, anything else against the sidebar's base model."""
    if tuned.run_dir is None:
        return base
    if tuned.base is not None:
        st.caption(
            f"Run checkpoints are diffed against the run's own base ({tuned.base}): its weights "
            "before training, in the run's precision — not the sidebar's base model."
        )
        return tuned.base
    if base is not None:
        st.caption(
            "This run has no base/ folder: its checkpoints are diffed against the sidebar's "
            "base model."
        )
    return base


def run_jobs() -> list[JobView]:
    """Training jobs (any state) whose result folder holds checkpoint-<step> folders."""
    views = [v for kind in TRAIN_KINDS for v in list_jobs(kind=kind, limit=50)]
    return [v for v in views if any((v.path / RESULT).glob("checkpoint-*"))]


def train_job_ids() -> list[str]:
    """Training jobs in any state: the runs a `?job=` link may name."""
    return [v.id for kind in TRAIN_KINDS for v in list_jobs(kind=kind, limit=200)]


def preselect_from_url() -> None:
    """`?job=<id>` opens that run's checkpoints, `?run_dir=` the run whose result folder it is,
    `?tuned=` a local model folder: each only when it is one of the choices listed here. A link
    never names an arbitrary path and never starts a download."""
    params = st.query_params
    if "job" in params and RUN_KEY not in st.session_state:
        wanted = params["job"]
        ids = train_job_ids()
        match = [i for i in ids if i == wanted] or [i for i in ids if i.startswith(wanted or "?")]
        if len(match) == 1:
            st.session_state.update({RUN_KEY: match[0], MODE_KEY: MODES[2]})
        else:
            ignored_link("job", wanted, "it is none of the training runs listed here")
    if "run_dir" in params and RUN_KEY not in st.session_state:
        wanted = params["run_dir"]
        runs = {str(v.path / RESULT): v.id for v in run_jobs()}
        if wanted in runs:
            st.session_state.update({RUN_KEY: runs[wanted], MODE_KEY: MODES[2]})
        else:
            ignored_link("run_dir", wanted, "it is none of the training runs listed here")
    if "tuned" in params and "sparsity_tuned_model" not in st.session_state:
        wanted = params["tuned"]
        if wanted in dict(local_choices()):
            st.session_state.update({"sparsity_tuned_model": wanted, MODE_KEY: MODES[0]})
        else:
            ignored_link("tuned", wanted, "it is none of the local model folders listed here")
    if MODE_KEY not in st.session_state:  # open on the newest run when there is one
        st.session_state[MODE_KEY] = MODES[2] if run_jobs() else MODES[0]


def download_button(spec: str | None, bar=st.sidebar) -> None:
    """For a hub id that is not in the local hub cache: a button that downloads its weights
    (bounded by SUBNETSCOPE_HUB_MAX_GB). Diffs never download on their own."""
    from engine.models import is_hub_id
    from engine.runtime import hub_reachable

    if not spec or Path(spec).expanduser().exists() or not is_hub_id(spec):
        return
    if not hub_reachable() or hub_cached(spec):
        return
    tip = "its safetensors weights and configs only, up to SUBNETSCOPE_HUB_MAX_GB"
    if bar.button(f"Download {spec}", key=f"sparsity_download_{spec}", help=tip):
        with st.spinner(f"Downloading {spec}…"):
            try:
                download_hub_weights(spec)
            except SubnetScopeError as exc:
                bar.error(str(exc))


def pick_tuned(base: str | None, bar=st.sidebar) -> Tuned:
    tuned = _pick_tuned(base, bar)
    st.session_state[PICKED_KEY] = (tuned.base or base, tuned.tuned)
    return tuned


def _pick_tuned(base: str | None, bar=st.sidebar) -> Tuned:
    download_button(base, bar)
    mode = bar.radio("Tuned", MODES, key=MODE_KEY, help="What to compare against the base")
    if mode == MODES[0]:
        choices = [(s, label) for s, label in local_choices() if s != base]
        if not choices:
            bar.caption("No other local model folder.")
            return Tuned(None)
        labels = dict(choices)
        picked = bar.selectbox(
            "Tuned model",
            list(labels),
            index=None,
            format_func=labels.get,
            placeholder="Choose a model folder",
            key="sparsity_tuned_model",
        )
        return Tuned(picked)
    if mode == MODES[1]:
        text = bar.text_input(
            "Tuned path",
            key="sparsity_tuned_path",
            placeholder="/path/to/model, file.safetensors or adapter folder",
            help="A model folder, a .safetensors file, or a PEFT adapter folder (merged onto the "
            "base); a hub id downloads after its button",
        )
        download_button(text.strip(), bar)
        return Tuned(text.strip() or None)
    jobs = {v.id: v for v in run_jobs()}
    if st.session_state.get(RUN_KEY) not in (*jobs, FOLDER, None):
        jobs[st.session_state[RUN_KEY]] = get_job(st.session_state[RUN_KEY])  # a listed run
    picked = bar.selectbox(
        "Run",
        [*jobs, FOLDER],
        format_func=lambda j: j if j == FOLDER else f"{j} ({jobs[j].status.state})",
        key=RUN_KEY,
        help="Training jobs with checkpoints, or any folder of checkpoint-<step> folders",
    )
    if picked == FOLDER:
        run_dir = bar.text_input("Run folder", key="sparsity_run_dir").strip()
        if not run_dir:
            return Tuned(None)
    else:
        run_dir = str(jobs[picked].path / RESULT)
    checkpoints = list_checkpoints(run_dir)
    steps = [step for step, _ in checkpoints]
    step = steps[-1]
    if len(steps) > 1:
        step = bar.select_slider(
            "Checkpoint",
            steps,
            value=steps[-1],
            key=f"sparsity_step_{run_dir}",
            help="The checkpoint diffed as the tuned weights",
        )
    return Tuned(str(dict(checkpoints)[step]), run_dir, run_base(run_dir))


def pick_config(bar=st.sidebar) -> DiffConfig:
    text = bar.text_input(
        "Tolerances τ", "1e-5 1e-6", key="sparsity_taus", help=DiffConfig.help("tolerances")
    )
    try:
        taus = tuple(float(t) for t in text.replace(",", " ").split())
    except ValueError:
        raise SubnetScopeError(f"tolerances are numbers like 1e-6, not '{text}'") from None
    ranks = bar.toggle(
        "Compute ranks", key="sparsity_ranks", help=DiffConfig.help("ranks") + " (slower)"
    )
    intersection = bar.toggle(
        "Shared tensors only", key="sparsity_intersection", help=DiffConfig.help("intersection")
    )
    reference = bar.toggle(
        "Seed's reference numbers",
        key="sparsity_reference",
        help=f"Also compute what {SCRIPT} prints: both checkpoints cast to bf16, "
        "|Δ| ≤ τ by torch.isclose, per-layer unweighted means (Heatmap view)",
    )
    return DiffConfig(tolerances=taus, ranks=ranks, intersection=intersection, reference=reference)


def _open_criterion_for_precision() -> None:
    """Before the criterion widget is drawn: when the picked checkpoints' precision differs from
    the one the criterion last opened on, open on that precision's criterion. A user's own
    choice stands until other checkpoints with another precision are picked."""
    base, tuned = st.session_state.get(PICKED_KEY, (None, None))
    if not base or not tuned:
        return
    precision = stored_precision(base, tuned, (path_stamp(base), path_stamp(tuned)))
    if precision is None:
        return
    if st.session_state.get(OPENED_FOR) != precision or CRITERION_KEY not in st.session_state:
        st.session_state[CRITERION_KEY] = opening_criterion(precision)
        st.session_state[OPENED_FOR] = precision


def pick_criterion(config: DiffConfig, bar=st.sidebar) -> str:
    """'exact', 'bf16' or a tolerance label: which changes the heatmap and tables count."""
    _open_criterion_for_precision()
    if CRITERION_KEY not in st.session_state:
        st.session_state[CRITERION_KEY] = "τ"
    kind = (
        bar.segmented_control(
            "Changed means",
            list(CRITERIA),
            key=CRITERION_KEY,
            help="τ: |Δ| > τ · exact: the stored bits differ · bf16-visible: the change survives a "
            "cast to bf16",
        )
        or "τ"
    )
    if CRITERIA[kind] is not None:
        return CRITERIA[kind]
    taus = [tolerance_key(t) for t in config.tolerances]
    if len(taus) == 1:
        return taus[0]
    return bar.select_slider("τ", taus, value=taus[-1], key=f"sparsity_tau_{'_'.join(taus)}")


def open_run(job_id: str) -> None:
    """Callback: show this run's checkpoints (before the sidebar widgets are drawn again)."""
    st.session_state[MODE_KEY] = MODES[2]
    st.session_state[RUN_KEY] = job_id


def train_options() -> tuple[str, dict] | None:
    """The training run to start: its algorithm and JSON params (checked); None, said on the
    page, when no train.* kind is registered or the params do not parse."""
    kinds = load_kinds()
    available = [k for k in TRAIN_KINDS if k in kinds]
    if not available:
        st.info(
            "Training runs (SFT / GRPO / PPO) are not available here: no train.* job kinds are "
            "registered (engine.training)."
        )
        return None
    kind = (
        st.segmented_control(
            "Algorithm",
            available,
            default=available[0],
            format_func=TRAIN_KINDS.get,
            key="sparsity_train_kind",
        )
        or available[0]
    )
    st.caption(kinds[kind].title)
    text = st.text_area(
        "Params (JSON)",
        json.dumps(kinds[kind].defaults, indent=2),
        height=220,
        key=f"sparsity_train_params_{kind}",
    )
    try:
        params = parse_params(text)
    except SubnetScopeError as exc:
        st.error(str(exc))
        return None
    return kind, params
