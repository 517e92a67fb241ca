"""The LoRA blender's pickers: the adapters (preselected from the URL), their base, the blend's
weights and combination, ReLoRA / rank-1 training options, and a trained generator's prompts."""

from __future__ import annotations

import streamlit as st

from dashboard.sources import ignored_link
from dashboard.stamps import workspace_stamp
from dashboard.views.lora.loaders import adapter_choices, generator_choices
from engine.errors import SubnetScopeError
from engine.lora import DENSITY_METHODS, METHODS, SVD_METHODS, AdapterSet, BlendSpec

WEIGHT_HELP = "wᵢ in Σ wᵢ·sᵢ·BᵢAᵢ (negative subtracts the adapter)"
PICK_KEY = "adapters"
SEEN_KEY = "adapters_seen"  # the adapters listed on the last run
GENERATOR_KEY = "lora_generator"
LINKED_KEY = "lora_gen_linked"  # the ?job= link already followed


def pick_adapters(bar=st.sidebar) -> tuple[list[str], list[str] | None]:
    """Adapters the jobs made (the demo's first, preselected) and typed folders, with their
    names (None when folders are typed); `?adapters=a,b` in the URL preselects listed ones. When
    adapters appear (a run finished) while none is picked, the preselected ones are."""
    found = adapter_choices(workspace_stamp())
    choices = [(path, name) for path, name, _ in found]
    labels = dict(choices)
    first = [path for path, _, preselect in found if preselect]
    if PICK_KEY not in st.session_state:
        wanted = [p for p in st.query_params.get(PICK_KEY, "").split(",") if p]
        if ignored := [p for p in wanted if p not in labels]:
            ignored_link(PICK_KEY, ",".join(ignored), "none of the adapters listed here")
        st.session_state[PICK_KEY] = [p for p in wanted if p in labels] or first
    kept = [p for p in st.session_state[PICK_KEY] if p in labels]  # one may have been deleted
    seen, typed = tuple(labels), st.session_state.get(f"{PICK_KEY}_typed", "").strip()
    if st.session_state.get(SEEN_KEY, seen) != seen and not kept and not typed:
        kept = first
    if kept != st.session_state[PICK_KEY]:
        st.session_state[PICK_KEY] = kept
    st.session_state[SEEN_KEY] = seen
    picked = bar.multiselect(
        "Adapters",
        [p for p, _ in choices],
        format_func=lambda p: labels.get(p, p),
        key=PICK_KEY,
        help="PEFT LoRA adapters for one base model: the demo's task adapters and finished "
        "LoRA runs",
    )
    typed = bar.text_area(
        "More adapter folders (one per line)",
        key=f"{PICK_KEY}_typed",
        height=68,
        placeholder="path/to/adapter",
    )
    extra = [line.strip() for line in typed.splitlines() if line.strip()]
    return list(picked) + extra, None if extra else [labels[p] for p in picked]


def generator_from_url() -> None:
    """`?job=<id>` of a trained generator (the Runs page's result link) opens the Generate view
    on it, once per session; other jobs' links (a LoRA run's) leave the page as it is."""
    wanted = st.query_params.get("job")
    if not wanted or st.session_state.get(LINKED_KEY) == wanted:
        return
    st.session_state[LINKED_KEY] = wanted
    if wanted in {job for job, _, _ in generator_choices(workspace_stamp())}:
        st.session_state.update({GENERATOR_KEY: wanted, "lora_view": "Generate"})


def pick_generator() -> tuple[str, str] | None:
    """A trained LoRA generator, the demo's first: (job id, result folder); None if none is."""
    found = generator_choices(workspace_stamp())
    if not found:
        return None
    labels = {job: label for job, _, label in found}
    job = st.selectbox(
        "Generator",
        list(labels),
        format_func=labels.get,
        key=GENERATOR_KEY,
        help="finished lora.generator_train jobs: loss · architecture · prompt encoder · the "
        "tasks it never trained on · job id",
    )
    return job, next(folder for j, folder, _ in found if j == job)


def generator_prompts(job_id: str, default: list[str]) -> str:
    """The prompts to condition on, one per line (their own text area per generator)."""
    return st.text_area(
        "Prompts (one per line)",
        "\n".join(default),
        key=f"lora_gen_prompts_{job_id}",
        height=110,
        help="a task's instructions, without answers (DnD conditions on prompts only); "
        "prefilled with held-out prompts of a task the generator never trained on",
    )


def base_source(adapters: AdapterSet, fallback: str | None) -> str:
    """The base the adapters were trained on (their configs agree), else the sidebar's model."""
    bases = {a.info.base_model for a in adapters.adapters if a.info.base_model}
    if len(bases) == 1:
        return bases.pop()
    if fallback is None:
        raise SubnetScopeError(
            "The adapters do not name their base model: pick one in the sidebar."
        )
    return fallback


def blend_controls(adapters: AdapterSet) -> BlendSpec:
    """A weight slider per adapter, the combination type and its density / rank."""
    names = adapters.names
    cols = st.columns(len(names))
    default = round(1.0 / len(names), 2)
    weights = tuple(
        float(col.slider(name, -1.0, 2.0, default, step=0.05, key=f"lora_w_{i}", help=WEIGHT_HELP))
        for i, (col, name) in enumerate(zip(cols, names, strict=True))
    )
    cols = st.columns([2, 2, 2, 2])
    method = cols[0].selectbox(
        "Combination",
        METHODS,
        index=METHODS.index("svd"),
        key="lora_method",
        help="PEFT's add_weighted_adapter types; svd and cat use the exact low-rank path",
    )
    density = None
    if method in DENSITY_METHODS:
        density = cols[1].slider("Density", 0.05, 1.0, 0.5, step=0.05, key="lora_density")
    rank = None
    if method in SVD_METHODS:
        top = sum(a.info.rank for a in adapters.adapters)
        rank = int(
            cols[2].number_input(
                "Blend rank",
                1,
                top,
                max(a.info.rank for a in adapters.adapters),
                key="lora_rank",
                help="svd blends keep this many singular directions",
            )
        )
    engine = "auto"
    if method in ("svd", "cat"):
        engine = cols[3].radio(
            "Engine",
            ["auto", "peft"],
            horizontal=True,
            key="lora_engine",
            format_func=lambda e: "exact low-rank" if e == "auto" else "PEFT",
            help="exact: QR of the stacked factors and SVD of the small core (O(d·k²)); "
            "PEFT: add_weighted_adapter (dense d×d SVD per module)",
        )
    return BlendSpec(weights=weights, method=method, rank=rank, density=density, engine=engine)


def relora_options(params: dict, defaults: dict) -> None:
    """ReLoRA's warm start and the parameters that train at full rank."""
    from engine.training import FULL_RANK, ReLoRAConfig

    cols = st.columns(2)
    warm = cols[0].number_input(
        "Full-rank warm-start steps",
        0,
        100_000,
        defaults["warm_start_steps"],
        placeholder="a quarter of the steps",
        key="lora_tr_relora_warm",
        help=ReLoRAConfig.help("warm_start_steps"),
    )
    params["warm_start_steps"] = None if warm is None else int(warm)
    params["full_rank"] = cols[1].selectbox(
        "Also trained at full rank",
        FULL_RANK,
        index=FULL_RANK.index(defaults["full_rank"]),
        key="lora_tr_relora_full",
        help=ReLoRAConfig.help("full_rank"),
    )


def rank1_options(params: dict, defaults: dict) -> None:
    """Rank-1 merging's update rule and optimizer."""
    from engine.training import RANK1_METHODS, RANK1_OPTIMIZERS, Rank1Config

    cols = st.columns(2)
    params["method"] = cols[0].selectbox(
        "Rank-1 update",
        RANK1_METHODS,
        index=RANK1_METHODS.index(defaults["method"]),
        key="lora_tr_rank1_method",
        help=Rank1Config.help("method"),
    )
    params["optimizer"] = cols[1].selectbox(
        "Optimizer",
        RANK1_OPTIMIZERS,
        index=RANK1_OPTIMIZERS.index(defaults["optimizer"]),
        key="lora_tr_rank1_opt",
        help=Rank1Config.help("optimizer"),
    )
