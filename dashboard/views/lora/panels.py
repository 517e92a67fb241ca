"""The LoRA blender's panels: adapters, blend, generations, geometry, deltas, save, runs, and
adapters generated from prompts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from dashboard.downloads import downloads
from dashboard.jobs_panel import event_tables, job_watcher, submit_job
from dashboard.loaders import chosen_dtype, memory_plan, shared_model
from dashboard.neuron_links import neuron_table
from dashboard.stamps import models_stamp, workspace_changed, workspace_stamp
from dashboard.views.lora import charts
from dashboard.views.lora.loaders import (
    SPLITS,
    Picked,
    ablation_for,
    blended,
    delta_table,
    generated_adapter,
    generated_delta,
    generated_norms,
    generation_column,
    generator_generations,
    generator_report,
    geometry_tables,
    manifest_mtime,
    meta_mtime,
    neuron_norms_table,
    teacher_deltas,
    teachers_info,
)
from dashboard.views.lora.pickers import (
    generator_prompts,
    pick_generator,
    rank1_options,
    relora_options,
)
from engine.errors import SubnetScopeError
from engine.lora import SVD_METHODS, AdapterSet, BlendResult, BlendSpec

if TYPE_CHECKING:
    from engine.lora import GeneratedAdapter

HERE = "lora"
LIVE_PARAMETERS = 500_000_000  # above: generations on a button press (≈ 1 s a token on a CPU at 1B)
TRAIN_KINDS = {
    "lora": "train.lora",
    "relora": "train.relora",
    "rank1": "train.rank1",
    "full": "train.full",
}
METHOD_LABELS = {
    "lora": "LoRA",
    "relora": "ReLoRA",
    "rank1": "Rank-1 merging",
    "full": "Full fine-tuning",
}
DEFAULT_PROMPTS = (
    "The old lighthouse keeper",
    "def read_config(path):",
    "What is 17 + 25?",
)


def adapters_table(adapters: AdapterSet) -> None:
    rows = [
        {
            "adapter": a.info.name,
            "rank": a.info.rank,
            "alpha": a.info.alpha,
            "scaling": a.info.scaling,
            "rslora": a.info.use_rslora,
            "modules": len(a.info.modules),
            "targets": ", ".join(a.info.target_modules),
            "path": str(a.info.path),
        }
        for a in adapters.adapters
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


# blend ------------------------------------------------------------------------------------
def blend_now(picked: Picked, adapters: AdapterSet, spec: BlendSpec) -> BlendResult:
    """The blend (cached per spec), saying why when PEFT's dense path makes it slow."""
    message = "Blending from the factors…"
    if spec.engine == "peft" or spec.method not in ("svd", "cat"):
        message = f"PEFT's {spec.method} over {len(adapters.modules)} modules…"
        if spec.method in SVD_METHODS:
            message += " (a dense d×d SVD per module: about 0.1 s each on one CPU core)"
    with st.spinner(message):
        return blended(picked, spec)


def blend_headline(result: BlendResult) -> None:
    cols = st.columns(4)
    cols[0].metric(
        "Blend error",
        f"{result.error:.2e}",
        help="‖blend − Σ wᵢ·sᵢ·BᵢAᵢ‖_F / ‖Σ wᵢ·sᵢ·BᵢAᵢ‖_F over all modules",
    )
    cols[1].metric(
        "Truncation",
        f"{result.truncation_total:.2e}",
        help="the part of that error a rank limit forces (the Eckart–Young optimum)",
    )
    ranks = {f.rank for f in result.factors.values()}
    cols[2].metric("Blend rank", "/".join(str(r) for r in sorted(ranks)))
    cols[3].metric(
        "Engine",
        "exact low-rank" if result.engine == "lowrank" else "PEFT",
        help=f"blended in {result.seconds * 1000:.0f} ms",
    )
    for note in result.notes:
        st.info(note)
    with st.expander("Error per module"):
        errors = pd.DataFrame(
            {
                "module": list(result.errors),
                "error": list(result.errors.values()),
                "truncation": [result.truncation[m] for m in result.errors],
            }
        ).sort_values("error", ascending=False)
        st.dataframe(errors, hide_index=True, width="stretch", height=240)
        downloads(errors, "lora-blend-errors", key="lora_err_dl")
    excess = result.error - result.truncation_total
    if excess > 1e-3:
        st.warning(
            f"This blend is {excess:.1%} further from the exact weighted sum than its rank "
            "limit explains — the combination type changes the update on purpose (trimming, "
            "dropping, sign election) or the merge is wrong."
        )


def generations_panel(source: str, picked: Picked, adapters: AdapterSet, spec: BlendSpec) -> None:
    st.subheader("Generations side by side")
    st.caption(
        "Greedy continuations from the shared base model with each update applied for its own "
        "calls only: the base, each adapter alone, and the blend (regenerated as the sliders move)."
    )
    text = st.text_area("Prompts (one per line)", "\n".join(DEFAULT_PROMPTS), key="lora_prompts")
    max_new = int(st.slider("New tokens", 4, 96, 24, key="lora_tokens"))
    prompts = tuple(p for p in text.splitlines() if p.strip())
    if not prompts:
        st.error("Type at least one prompt.")
        return
    table = {"prompt": list(prompts)}
    dtype = chosen_dtype()
    variants = ("base", *adapters.names, "blend")
    if not _live_generations(source, dtype, len(variants) * len(prompts) * max_new):
        return
    started = time.perf_counter()
    with st.spinner("Generating…"):
        for variant in variants:
            table[variant] = generation_column(
                source,
                dtype,
                picked,
                variant,
                spec if variant == "blend" else None,
                prompts,
                max_new,
            )
    frame = pd.DataFrame(table)
    st.dataframe(frame, hide_index=True, width="stretch")
    st.caption(
        f"{time.perf_counter() - started:.1f} s on {shared_model(source, dtype).device.type} "
        "(columns already generated for these prompts are reused)"
    )
    downloads(frame, "lora-generations", key="lora_gen_dl")


def _live_generations(source: str, dtype: str, tokens: int) -> bool:
    """Whether to generate now: at once below LIVE_PARAMETERS (a slider move answers in
    seconds), on a button press above it (a 1B model on a CPU takes about a second a token)."""
    plan = memory_plan(source, dtype, models_stamp())
    small = isinstance(plan, str) or plan.parameters < LIVE_PARAMETERS
    live = st.toggle(
        "Regenerate as the sliders move",
        value=small,
        key="lora_live_generations",
        help=f"On by default below {LIVE_PARAMETERS / 1e6:,.0f}M parameters",
    )
    if live or st.button(f"Generate ({tokens:,} tokens)", key="lora_generate"):
        return True
    st.caption(
        f"{tokens:,} new tokens to generate on this model: press Generate (columns already "
        "generated for these prompts are reused)."
    )
    return False


def geometry_panel(picked: Picked, adapters: AdapterSet, spec: BlendSpec, source: str) -> None:
    from engine.lora import norms_by_layer, ranks_by_kind

    st.subheader("Geometry of the updates")
    st.caption(
        "Computed exactly from the factors (no d×d matrix): ‖ΔW‖_F per layer, effective rank "
        "(exp of the entropy of the singular values) and stable rank (Σs² / s²_max), cosines."
    )
    geometry, matrix, pairs = geometry_tables(picked, spec)
    st.markdown("**‖ΔW‖ per layer** (the blend dashed)")
    st.altair_chart(charts.norm_per_layer(norms_by_layer(geometry)), width="stretch")
    st.markdown("**Ranks per module kind**")
    st.altair_chart(charts.ranks_by_kind(ranks_by_kind(geometry)))
    if len(adapters.names) > 1:
        left, right = st.columns([2, 3])
        with left:
            st.markdown("**Cosine between adapters** (all modules)")
            st.altair_chart(charts.cosine_heatmap(matrix))
        with right:
            options = sorted({(a, b) for a, b in zip(pairs["a"], pairs["b"], strict=True)})
            a, b = st.selectbox(
                "Pair", options, format_func=lambda p: f"{p[0]} · {p[1]}", key="lora_pair"
            )
            st.altair_chart(
                charts.module_cosines(pairs[(pairs["a"] == a) & (pairs["b"] == b)]),
                width="stretch",
            )
    with st.expander("Per-module table"):
        st.dataframe(geometry, hide_index=True, width="stretch", height=320)
        downloads(geometry, "lora-geometry", key="lora_geo_dl")
    neurons_section(picked, adapters, spec, source)


def neurons_section(picked: Picked, adapters: AdapterSet, spec: BlendSpec, source: str) -> None:
    """The neurons each update moves most, linked to their passports on the base model."""
    st.markdown(
        "**Neurons the update moves most** — ‖ΔW‖₂ of each neuron's row of up/gate and column "
        "of down, exact from the factors"
    )
    left, right = st.columns(2)
    name = left.selectbox("Update", [*adapters.names, "blend"], key="lora_neurons_of")
    top = right.number_input("Show top", 1, 100_000, 50, step=10, key="lora_neurons_top")
    try:
        norms = neuron_norms_table(picked, spec, name, source)
    except SubnetScopeError as exc:
        st.error(str(exc))
        return
    norms = norms.dropna(subset=["total"])
    if norms.empty:
        st.info(
            f"'{name}' updates no MLP projection (up, gate or down), so no neuron has an update "
            "of its own."
        )
        return
    ranked = norms.sort_values("total", ascending=False, kind="stable").head(int(top))
    neuron_table(ranked, source, key=f"lora_neurons_{name}", height=320)
    downloads(ranked, f"lora-neurons-{name.replace('/', '-')}", key="lora_neurons_dl")


def deltas_panel(source: str, picked: Picked, spec: BlendSpec) -> None:
    from engine.lora import PROBE_SETS, delta_distances, delta_map

    st.subheader("Delta activations")
    st.caption(
        "Δ(M, B) = v(M) − v(B), v = the mean last-layer, last-token hidden state over probe "
        "texts (seed 004). Adapters and base are cached; the blend moves as the sliders move."
    )
    probes = st.selectbox(
        "Probes",
        list(PROBE_SETS),
        key="lora_probes",
        help="generic, math, code, commonsense, mixed: the seed's probes (Delta Activations / "
        "LLGBM), verbatim; wide*, prose, instructions: SubnetScope's own larger sets",
    )
    table = delta_table(source, chosen_dtype(), picked, spec, probes)
    if table.truncated:
        st.warning(
            f"{table.truncated} probe text(s) are longer than {table.max_length} tokens and were "
            f"cut: their last token is token {table.max_length}."
        )
    points = delta_map(table)
    st.altair_chart(charts.delta_map(points), width="stretch")
    distances = delta_distances(table)
    left, right = st.columns(2)
    left.dataframe(points, hide_index=True, width="stretch")
    right.dataframe(distances, hide_index=True, width="stretch")
    downloads(distances, "lora-delta-distances", key="lora_delta_dl")


# save -------------------------------------------------------------------------------------
def save_panel(adapters: AdapterSet, result: BlendResult, source: str) -> None:
    from engine.lora import save_blend, saved_dir
    from engine.names import NAME_RULE, named_folder

    st.subheader("Save the blend")
    st.caption("A PEFT folder (adapter_config.json + adapter_model.safetensors) for this base.")
    name = st.text_input("Name", "blend", key="lora_save_name", help=NAME_RULE)
    try:
        folder, problem = named_folder(saved_dir(), name.strip(), "blend name"), None
    except SubnetScopeError as exc:
        folder, problem = saved_dir() / "<name>", str(exc)
    st.caption(f"→ `{folder}`")
    weights = " ".join(f"{w:g}" for w in result.spec.weights)
    st.code(
        f"python -m engine lora blend --base {source} --adapters "
        + " ".join(str(a.info.path) for a in adapters.adapters)
        + f" --weights {weights} --method {result.spec.method}"
        + (f" --rank {result.spec.rank}" if result.spec.rank else "")
        + (f" --density {result.spec.density:g}" if result.spec.density else "")
        + f" --out {folder}",
        language="bash",
    )
    if not st.button("Save", type="primary", key="lora_save_go"):
        return
    if problem:
        st.error(problem)
        return
    if folder.exists():
        st.error(f"'{folder}' exists already: choose another name (nothing was overwritten).")
        return
    path = save_blend(result, adapters, folder)
    workspace_changed()
    st.success(f"Saved to {path}; it is listed with the adapters now.")


# training ---------------------------------------------------------------------------------
def train_panel(source: str) -> None:
    from engine.jobs import get_kind
    from engine.training import CONFIGS

    st.subheader("Train")
    st.caption(
        "Task-adapter LoRA SFT (PEFT + TRL); ReLoRA — a full-rank warm start, then merge into "
        "the base and restart the adapter every k steps with a partial optimizer reset and a "
        "jagged schedule; rank-1 merging — each step applies the best rank-1 approximation of "
        "its own update (or, as 'random projection', a fresh rank-1 LoRA with a random A); full "
        "fine-tuning on the same data and steps, the baseline. Each logs the effective rank of "
        "the accumulated update and its subspace trajectory."
    )
    method = (
        st.segmented_control(
            "Method",
            list(TRAIN_KINDS),
            default="lora",
            key="lora_train_method",
            format_func=METHOD_LABELS.get,
        )
        or "lora"
    )
    kind = TRAIN_KINDS[method]
    defaults = get_kind(kind).defaults
    cols = st.columns(4)
    dataset = cols[0].text_input("Data", defaults["dataset"], key=f"lora_tr_{method}_data")
    steps = cols[1].number_input("Steps", 1, 100_000, defaults["steps"], key=f"lora_tr_{method}_s")
    lr = cols[2].number_input(
        "Learning rate", 1e-7, 1.0, float(defaults["lr"]), format="%.0e", key=f"lora_tr_{method}_lr"
    )
    params = {**defaults, "model": source, "dataset": dataset, "steps": int(steps), "lr": float(lr)}
    if "lora_rank" in defaults and method not in ("rank1", "full"):
        params["lora_rank"] = int(
            cols[3].number_input("Rank", 1, 1024, defaults["lora_rank"], key=f"lora_tr_{method}_r")
        )
    if "reset_every" in defaults:
        params["reset_every"] = int(
            st.number_input(
                "Merge and reset every k steps",
                1,
                100_000,
                defaults["reset_every"],
                key="lora_tr_relora_k",
            )
        )
        relora_options(params, defaults)
    if method == "rank1":
        rank1_options(params, defaults)
    if st.button("Start run", type="primary", key="lora_tr_go", icon=":material/play_arrow:"):
        try:  # the run's own checks, before a job starts only to fail
            CONFIGS[method].from_params(params, what="options")
        except SubnetScopeError as exc:
            st.error(str(exc))
        else:
            submit_job(kind, params, key="lora_tr_last")
    last = st.session_state.get("lora_tr_last")
    if last:
        job_watcher(last, key="lora_tr_watch", here=HERE)
    rank_runs_section()


RANK_METRICS = ("rank/effective", "rank/stable")
SUBSPACE_METRICS = ("subspace/overlap_prev", "subspace/overlap_final")


def rank_runs_section() -> None:
    from engine.jobs import list_jobs

    runs = [v for v in list_jobs() if v.spec.kind in TRAIN_KINDS.values()]
    st.subheader("Rank evolution")
    if not runs:
        st.info("No LoRA, ReLoRA, rank-1 or full fine-tuning run yet.")
        return
    labels = {
        v.id: f"{v.spec.kind.removeprefix('train.')} · {v.id} · {v.status.state}" for v in runs
    }
    chosen = st.multiselect(
        "Runs", list(labels), default=list(labels)[:3], format_func=labels.get, key="lora_runs"
    )
    frames = []
    for view in (v for v in runs if v.id in chosen):
        metrics, _ = event_tables(view)
        metrics = metrics[metrics["name"].isin([*RANK_METRICS, *SUBSPACE_METRICS])]
        frames.append(metrics.assign(run=labels[view.id]))
    logged = pd.concat(frames) if frames else pd.DataFrame(columns=["name"])
    table = logged[logged["name"].isin(RANK_METRICS)]
    if table.empty:
        st.info("The chosen runs have logged no ranks yet.")
        return
    st.altair_chart(charts.rank_evolution(table), width="stretch")
    downloads(table, "lora-rank-evolution", key="lora_rank_dl")
    subspaces = logged[logged["name"].isin(SUBSPACE_METRICS)]
    if not subspaces.empty:
        st.markdown("**Subspace trajectory**")
        st.altair_chart(charts.subspace_trajectory(subspaces), width="stretch")
        st.caption(
            "Per record, the update made since the previous record: the mean cos² of the "
            "principal angles between its top-8 column space and the previous interval's "
            "(1 = the same directions, 0 = orthogonal) and the final accumulated update's "
            "(written when the run ends); means over target modules. Per-module rows, row "
            "spaces included: the run's subspaces.parquet."
        )


# the generator ----------------------------------------------------------------------------
MADE_KEY = "lora_gen_made"  # (job id, meta mtime, prompts) of the last Generate press
SAVED_KEY = "lora_gen_saved"  # (folder, job id, prompts) of the last save
MAP_COLORS = {
    "base": "#7f7f7f",
    "teacher": "#1f77b4",
    "held-out teacher": "#ff7f0e",
    "generated": charts.BLEND_COLOR,
}
NUMBER = st.column_config.NumberColumn


def generate_panel() -> None:
    """Pick a trained generator, see how it scored, type prompts, generate, compare, save."""
    st.subheader("Generate an adapter from prompts")
    st.caption(
        "A LoRA generator (seed 004: Drag-and-Drop LLMs + LLGBM) maps a batch of a task's "
        "prompts to every target module's A and B in one forward pass. It was trained on "
        "teacher adapters' checkpoints — their weights and/or their delta activations — and "
        "never on its held-out tasks."
    )
    chosen = pick_generator()
    if chosen is None:
        st.info(
            "No trained LoRA generator yet: `python -m engine demo build` trains the demo's "
            "(its parts lora-teachers and lora-generator; `--only lora-teachers`, then `--only "
            "lora-generator`, builds just those), or submit a lora.generator_train job on a "
            "train.lora_teachers run."
        )
        return
    job_id, result = chosen
    mtime = meta_mtime(result)
    report = generator_report(result, mtime)
    generator_evaluation(report, job_id)
    meta = report["meta"]
    try:
        t_mtime = manifest_mtime(meta["teachers"])
    except SubnetScopeError as exc:
        st.error(str(exc))
        return
    info = teachers_info(meta["teachers"], t_mtime)
    tasks = list(info["finals"])
    first = (meta["held_out"] or tasks)[0]
    st.markdown("#### Generate")
    text = generator_prompts(job_id, info["prompts"].get(first, [])[:3])
    if st.button("Generate", type="primary", key="lora_gen_go", icon=":material/auto_awesome:"):
        st.session_state[MADE_KEY] = (job_id, mtime, text)
    made = st.session_state.get(MADE_KEY)
    if not made or made[:2] != (job_id, mtime):
        st.caption("Press Generate: one forward pass of the generator over these prompts.")
        return
    prompts = made[2]
    if prompts != text:
        st.caption("The prompts changed: press Generate again (showing the last adapter).")
    dtype = chosen_dtype()
    try:
        adapter = generated_adapter(job_id, mtime, prompts, dtype)
    except SubnetScopeError as exc:
        st.error(str(exc))
        return
    held = set(meta["held_out"])
    task = st.selectbox(
        "Compare with the teacher of task",
        tasks,
        index=tasks.index(first),
        format_func=lambda t: f"{t} (held out)" if t in held else t,
        key=f"lora_gen_teacher_{job_id}",  # each generator has its own tasks
        help="its last checkpoint; a held-out task's teacher never trained the generator",
    )
    teacher, teacher_name = info["finals"][task], f"teacher ({task})"
    norms = generated_norms(job_id, mtime, prompts, dtype, teacher, teacher_name)
    st.markdown(
        f"**‖ΔW‖_F per layer** — a rank-{meta['rank']} update of {len(adapter.factors)} "
        f"modules from {len(adapter.prompts)} prompts, beside the teacher's"
    )
    st.altair_chart(charts.norm_per_layer(norms), width="stretch")
    generated_map(job_id, mtime, prompts, dtype, meta, t_mtime, held)
    generated_texts(job_id, mtime, prompts, dtype, teacher, teacher_name, info["template"])
    save_generated_section(adapter, job_id, prompts, first)


def generator_evaluation(report: dict, job_id: str) -> None:
    """The generator's scores per split, its training curve and the ablation on its teachers."""
    meta, config = report["meta"], report["meta"].get("config", {})
    st.markdown(
        f"**{meta['model']}** · rank {meta['rank']} · {meta['parameters']:,} generator "
        f"parameters · trained on {', '.join(meta['train_tasks'])} · {job_id}"
    )
    st.caption(
        "Held-out loss: mean NLL (nats per token) of the task's held-out responses given their "
        "prompts. Recovery = (L_base − L) / (L_base − L_teacher): 1 is the teacher's "
        "improvement, 0 none. δ cos: cosine of the adapter's delta activation with the "
        "teacher's. Teacher = the task's last checkpoint; teachers' mean = the mean A and mean "
        "B of the training checkpoints (the generator's anchor); generated = mean over "
        f"{config.get('eval_draws', '?')} adapters, each from up to "
        f"{config.get('n_prompts', '?')} "
        "prompts the generator never saw. Seen tasks: the mean over tasks."
    )
    columns = {
        "held-out loss": NUMBER(format="%.3f", help="nats per response token"),
        "recovery": NUMBER(format="%.2f"),
        "δ cos to teacher": NUMBER(format="%.2f"),
    }
    splits = report["splits"]
    if not splits:
        st.info("This generator's run wrote no evaluation.")
    else:
        for col, (title, (tasks, frame)) in zip(
            st.columns(len(splits)), splits.items(), strict=True
        ):
            col.markdown(f"**{title}**: {', '.join(tasks)}")
            col.dataframe(frame, hide_index=True, width="stretch", column_config=columns)
    history = report["history"]
    if not history.empty:
        st.markdown("**Training loss** (and its terms)")
        st.altair_chart(charts.generator_history(history), width="stretch")
    with st.expander("Every task and draw"):
        st.dataframe(report["evaluation"], hide_index=True, width="stretch", height=280)
        downloads(report["evaluation"], f"lora-generator-{job_id}", key="lora_gen_eval_dl")
    ablation_section(meta["teachers"])


def _mean_std(values: dict, name: str) -> str:
    mean, std = values.get(f"{name}_mean"), values.get(f"{name}_std")
    if mean is None:
        return "–"
    return f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None and std == std else "")


def ablation_section(teachers: str) -> None:
    found = ablation_for(teachers, workspace_stamp())
    if found is None:
        return
    ablation_job, summary = found
    rows = []
    for key, values in summary.get("by_config", {}).items():
        split, config = key.split("/", 1)
        rows.append(
            {
                "split": SPLITS.get(split, split),
                "config": config,
                "recovery": _mean_std(values, "recovery"),
                "δ cos to teacher": _mean_std(values, "delta_cos"),
            }
        )
    st.markdown(
        f"**Ablation on the same teachers** ({ablation_job}): mean ± std over "
        f"{summary.get('trials', '?')} trials of {summary.get('steps', '?')} steps each, held "
        f"out: {', '.join(summary.get('held_out', []))}"
    )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def generated_map(
    job_id: str, mtime: int, prompts: str, dtype: str, meta: dict, t_mtime: int, held: set
) -> None:
    """The generated adapter on the teachers' delta map, with its distance to each teacher."""
    import numpy as np

    from engine.lora import DeltaTable, delta_distances, delta_map

    teachers = meta["teachers"]
    tasks, vectors, base = teacher_deltas(meta["model"], dtype, teachers, t_mtime)
    generated = generated_delta(job_id, mtime, prompts, dtype, teachers, t_mtime)
    names = [f"{t} (held out)" if t in held else t for t in tasks]
    table = DeltaTable(
        names=[*names, "generated"],
        kinds=["adapter"] * len(tasks) + ["generated"],
        vectors=np.vstack([vectors, generated[None]]).astype(np.float32),
        base=base,
        probes="the teachers' probes",
    )
    points = delta_map(table)  # the plane of the teachers; the generated adapter projected
    held_names = {n for n, t in zip(names, tasks, strict=True) if t in held}
    points.loc[points["kind"] == "adapter", "kind"] = "teacher"
    points.loc[points["name"].isin(held_names), "kind"] = "held-out teacher"
    st.markdown(
        "**Its place among the teachers** — Δ = v(adapter) − v(base) over the teachers' probe "
        "texts (each task's last checkpoint; PCA of the teachers)"
    )
    distances = delta_distances(table)
    distances = distances[distances["b"] == "generated"].rename(columns={"a": "teacher"})
    left, right = st.columns([3, 2])
    left.altair_chart(charts.delta_map(points, MAP_COLORS), width="stretch")
    right.dataframe(
        distances[["teacher", "distance", "cosine"]].sort_values("distance"),
        hide_index=True,
        width="stretch",
        column_config={"distance": NUMBER(format="%.4g"), "cosine": NUMBER(format="%.2f")},
    )


def generated_texts(
    job_id: str,
    mtime: int,
    prompts: str,
    dtype: str,
    teacher: str,
    teacher_name: str,
    template: str,
) -> None:
    st.markdown("**Generations** — greedy, each update applied for its own calls only")
    left, right = st.columns(2)
    wrap = left.toggle(
        f"Wrap the prompts in the teachers' template ({template})",
        value=True,
        key="lora_gen_wrap",
        help="the format the teachers were trained on; off: the prompts as typed",
    )
    max_new = int(right.slider("New tokens", 4, 96, 24, key="lora_gen_tokens"))
    table = generator_generations(
        job_id, mtime, prompts, dtype, teacher, teacher_name, template if wrap else None, max_new
    )
    st.dataframe(table, hide_index=True, width="stretch")
    downloads(table, "lora-generated-generations", key="lora_gen_texts_dl")


def save_generated_section(adapter: GeneratedAdapter, job_id: str, prompts: str, task: str) -> None:
    from engine.lora import save_generated, saved_dir
    from engine.names import NAME_RULE, named_folder

    st.markdown("**Save** — a PEFT folder with generated.json (its prompts and generator)")
    name = st.text_input("Name", f"generated-{task}", key="lora_gen_save_name", help=NAME_RULE)
    try:
        folder, problem = named_folder(saved_dir(), name.strip(), "adapter name"), None
    except SubnetScopeError as exc:
        folder, problem = saved_dir() / "<name>", str(exc)
    st.code(
        f"python -m engine lora generate --generator {job_id} --prompts prompts.txt --out {folder}",
        language="bash",
    )
    if st.button("Save", key="lora_gen_save_go", icon=":material/save:"):
        if problem:
            st.error(problem)
        elif folder.exists():
            st.error(f"'{folder}' exists already: choose another name (nothing was overwritten).")
        else:
            try:
                path = save_generated(adapter, folder)
            except SubnetScopeError as exc:
                st.error(str(exc))
            else:
                workspace_changed()
                st.session_state[SAVED_KEY] = (str(path), job_id, prompts)
    saved = st.session_state.get(SAVED_KEY)
    if saved and saved[1:] == (job_id, prompts) and Path(saved[0]).is_dir():
        st.success(
            f"Saved to {saved[0]}: it is listed with the adapters in the sidebar now, to blend "
            "with the teachers."
        )
