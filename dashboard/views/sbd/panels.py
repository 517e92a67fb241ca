"""Sections of the Set block decoding page: one prompt decoded with SBD and autoregressively (each
token coloured by the pass that produced it), a run's trade-off curve, and the launchers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from dashboard.downloads import downloads
from dashboard.jobs_panel import job_launcher, job_watcher
from dashboard.loaders import chosen_dtype
from dashboard.stamps import path_stamp, workspace_stamp
from dashboard.views.sbd import charts
from dashboard.views.sbd.loaders import (
    ar_generation,
    evaluation_facts,
    evaluation_list,
    rendered_prompt,
    result_table,
    run_meta,
    sbd_generation,
)
from dashboard.views.sbd.pickers import SBDRun, decoding_picker
from engine.errors import SubnetScopeError
from engine.sbd import EVAL_FILE, EVAL_KIND, SAMPLES_FILE, TRAIN_KIND, EvalConfig, SBDConfig

if TYPE_CHECKING:
    from engine.models import CountedGeneration

HERE = "sbd"
# Light backgrounds, one per pass (repeating): neighbouring passes always differ.
PALETTE = (
    "#a6cee3",
    "#fdbf6f",
    "#b2df8a",
    "#fb9a99",
    "#cab2d6",
    "#ffff99",
    "#8dd3c7",
    "#fccde5",
    "#d9d9d9",
    "#bc80bd",
)


def shown(piece: str) -> str:
    """A token as a table or chart cell shows it: spaces and line breaks made visible."""
    return piece.replace(" ", "␣").replace("\n", "⏎") or "∅"


def token_frame(gen: CountedGeneration) -> pd.DataFrame:
    """One row per generated token: position and the block and slot it filled (1-based), and
    the forward pass that revealed it."""
    k = max(gen.block_size, 1)
    return pd.DataFrame(
        {
            "position": range(1, len(gen.pieces) + 1),
            "pass": gen.passes,
            "block": [i // k + 1 for i in range(len(gen.pieces))],
            "slot": [i % k + 1 for i in range(len(gen.pieces))],
            "shown": [shown(p) for p in gen.pieces],
        }
    )


def pass_table(tokens: pd.DataFrame) -> pd.DataFrame:
    """Per forward pass: its block, which slots it revealed and their tokens."""
    return (
        tokens.groupby("pass", as_index=False)
        .agg(
            block=("block", "first"),
            tokens=("position", "size"),
            slots=("slot", list),
            positions=("position", list),
            revealed=("shown", list),
        )
        .sort_values("pass")
    )


def coloured(gen: CountedGeneration) -> str:
    """The generation as HTML spans, each token on its pass's colour with the pass as subscript."""
    spans = []
    for piece, step in zip(gen.pieces, gen.passes, strict=True):
        colour = PALETTE[(step - 1) % len(PALETTE)]
        spans.append(
            f'<span title="pass {step}" style="background:{colour};border-radius:3px">'
            f'{html.escape(piece)}<sub style="font-size:0.6em;color:#444">{step}</sub></span>'
        )
    body = "".join(spans) or "<i>(no text)</i>"
    return f'<div style="white-space:pre-wrap;font-family:monospace;line-height:2.1">{body}</div>'


def legend(passes: list[int]) -> str:
    """One chip per forward pass on its colour; "×n" where the pass revealed n > 1 tokens."""
    counts = pd.Series(passes).value_counts().sort_index()
    chips = "".join(
        f'<span title="pass {p}: {n} token{"s" if n > 1 else ""}" style="background:'
        f"{PALETTE[(p - 1) % len(PALETTE)]};padding:0 5px;margin:0 2px 2px 0;border-radius:3px;"
        f'font-size:0.8em;display:inline-block">{p}{f" ×{n}" if n > 1 else ""}</span>'
        for p, n in counts.items()
    )
    return f"<div>forward pass (× tokens it revealed): {chips}</div>"


def compared(passes: int, autoregressive: int) -> str:
    """SBD's forward passes against autoregressive decoding's, as a ratio in words."""
    if passes == autoregressive:
        return "as many as autoregressive"
    if passes < autoregressive:
        return f"{autoregressive / passes:.2f}× fewer than autoregressive"
    return f"{passes / autoregressive:.2f}× more than autoregressive"


def verdict(instruction: str, text: str) -> str:
    """ " · answer right" / " · answer wrong" for a demo sum ("What is a + b?"; the evaluation's
    rule: the first integer after the first "=" equals a + b), else nothing."""
    from engine.sbd import answer_correct

    try:
        right = answer_correct({"instruction": instruction}, text)
    except SubnetScopeError:  # not a sum: nothing to check against
        return ""
    return " · answer right" if right else " · answer wrong"


# decode -------------------------------------------------------------------------------------
def decode_panel(run: SBDRun) -> None:
    """One prompt decoded by SBD at the chosen γ and k, and autoregressively, side by side."""
    dtype = chosen_dtype()
    meta = run_meta(run.folder, path_stamp(run.folder))
    model_dir, template = meta["model_dir"], meta.get("template", "auto")
    choice = decoding_picker((meta.get("config") or {}).get("eval_block_size", 16))
    if not choice.instruction.strip():
        st.info("Type a prompt.")
        return
    prompt = rendered_prompt(model_dir, dtype, template, choice.instruction)
    stamp = path_stamp(model_dir)
    sbd = sbd_generation(
        model_dir,
        stamp,
        dtype,
        prompt,
        choice.block_size,
        choice.threshold,
        choice.ntp_first,
        choice.max_new,
    )
    ar = ar_generation(model_dir, stamp, dtype, prompt, choice.max_new)
    cols = st.columns(4)
    cols[0].metric(
        "Forward passes, SBD",
        sbd.forwards,
        compared(sbd.forwards, ar.forwards),
        delta_color="off",
        delta_arrow="off",
    )
    cols[1].metric("Tokens per forward, SBD", f"{sbd.tokens_per_forward:.2f}")
    cols[2].metric("Forward passes, autoregressive", ar.forwards)
    cols[3].metric("Same text as autoregressive", "yes" if sbd.text == ar.text else "no")
    left, right = st.columns(2)
    with left:
        st.markdown(
            f"**Set block decoding** · γ = {choice.threshold:.2f} · k = {sbd.block_size}"
            + verdict(choice.instruction, sbd.text)
        )
        # st.html, not markdown: a generated "*", "$" or blank line must stay plain text.
        st.html(coloured(sbd) + legend(sbd.passes))
    with right:
        st.markdown(
            "**Autoregressive** · one token per forward" + verdict(choice.instruction, ar.text)
        )
        st.code(ar.text or "(no text)", language=None)
    st.caption(
        "Forward passes count every call of the model, the one that reads the prompt included "
        "(SBD reads the prompt and the first block in one pass). Tokens per forward = (tokens "
        f"generated + the end-of-sequence token, if reached) / passes. Both greedy, KV cached. "
        f"Wall time when first computed: SBD {sbd.seconds:.2f} s, autoregressive "
        f"{ar.seconds:.2f} s."
    )
    with st.expander("The prompt as the model saw it", expanded=False):
        st.code(sbd.prompt, language=None)
    if not sbd.pieces:
        return
    tokens = token_frame(sbd)
    st.subheader("Which pass revealed which token")
    st.altair_chart(charts.reveal_chart(tokens), width="stretch")
    st.caption(
        f"Row = forward pass, column = token. Each block holds k = {sbd.block_size} mask slots; "
        "a pass reveals the masked slots of lowest entropy while their summed entropies, "
        "without the last one, stay ≤ γ (at least one), so tokens revealed together need not "
        "be adjacent. ␣ = space, ⏎ = line break."
    )
    st.dataframe(pass_table(tokens), hide_index=True, width="stretch")


# trade-off ----------------------------------------------------------------------------------
def tradeoff_panel(run: SBDRun) -> None:
    """The run's evaluation: accuracy and forwards per token against γ, AR as the reference."""
    st.subheader("Quality against forward passes")
    meta = run_meta(run.folder, path_stamp(run.folder))
    if "after" in meta:
        low, high = meta["block_sizes"]
        st.caption(
            f"The fine-tune: {meta['steps']} steps, k drawn from {low}–{high} per step, last "
            f"SBD loss {meta['final_loss']:.3f} (next-token and masked cross-entropy, one mean "
            "over both); next-token perplexity of its held-out records "
            f"{meta['before']['heldout_ppl']:.3g} before → {meta['after']['heldout_ppl']:.3g} "
            "after."
        )
    found = [e for e in evaluation_list(workspace_stamp()) if run.evaluated_by(e[2])]
    if not found:
        st.info("No evaluation of this run yet: start one below.")
    else:
        labels = {folder: label for folder, label, *_ in found}
        folder = st.selectbox("Evaluation", list(labels), format_func=labels.get, key="sbd_eval")
        evaluation_section(folder)
    evaluate_launcher(run, (meta.get("config") or {}).get("eval_block_size"))


def evaluation_section(folder: str) -> None:
    from engine.sbd import evaluation_summary

    table = result_table(folder, EVAL_FILE, workspace_stamp())
    facts = evaluation_facts(folder, workspace_stamp())
    best = evaluation_summary(table)
    ar = table[table["method"] == "autoregressive"].iloc[0]
    sbd = table[table["method"] != "autoregressive"]
    cols = st.columns(4)
    cols[0].metric("Accuracy, autoregressive", f"{best['ar_accuracy']:.1%}")
    cols[1].metric("Forward passes per answer, AR", f"{ar['forwards_per_answer']:.1f}")
    within = (
        "the largest autoregressive / SBD ratio of forward passes among the thresholds whose "
        "accuracy is at most 2 points below autoregressive decoding's"
    )
    if best["best_speedup"] is not None:
        cols[2].metric(
            "Fewest passes within 2 points",
            f"{best['best_speedup']:.2f}× fewer",
            f"γ = {best['best_threshold']:g}, k = {int(sbd['block_size'].iloc[0])}",
            delta_color="off",
            delta_arrow="off",
            help=within,
        )
        cols[3].metric("Its accuracy", f"{best['best_accuracy']:.1%}")
    else:
        cols[2].metric("Fewest passes within 2 points", "none", help=within)
    left, right = st.columns(2)
    with left:
        st.altair_chart(charts.versus_threshold(table, "accuracy", "accuracy"), width="stretch")
    with right:
        chart = charts.versus_threshold(table, "forwards_per_token", "forward passes per token")
        st.altair_chart(chart, width="stretch")
    st.caption(
        f"{int(ar['examples'])} examples: {facts.get('examples', 'held-out examples')}. Dashed "
        "rule: autoregressive decoding of the same fine-tuned model. Accuracy: the first integer "
        "after the first '=' equals a + b. Forwards per token: Σ forward passes / Σ tokens "
        "generated, the end-of-sequence token included; speedup: autoregressive passes / SBD "
        "passes on the same examples. agreement: the share of answers identical to the "
        "autoregressive one; base_ppl: perplexity of the generated tokens under the base model "
        "(before fine-tuning), given the prompt."
    )
    st.dataframe(table, hide_index=True, width="stretch")
    downloads(table, "sbd-evaluation", key="sbd_eval_dl")
    if (Path(folder) / SAMPLES_FILE).is_file():
        with st.expander("Every answer", expanded=False):
            samples = result_table(folder, SAMPLES_FILE, workspace_stamp())
            st.dataframe(samples, hide_index=True, width="stretch")


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(t) for t in text.replace(",", " ").split()]
    except ValueError as exc:
        raise SubnetScopeError(f"{what} must be numbers, got {text!r}") from exc


def evaluate_launcher(run: SBDRun, block_size: int | None = None) -> None:
    """Thresholds, k (default: the run's own evaluation k) and examples in; an `sbd.evaluate`
    job of this run out, watched live."""
    from engine.jobs import get_kind

    st.subheader("Evaluate")
    if run.job is None:
        st.info("Evaluation jobs read finished runs: pick one of the listed runs.")
        return
    defaults = get_kind(EVAL_KIND).defaults
    cols = st.columns(4)
    thresholds = cols[0].text_input(
        "Thresholds γ",
        " ".join(f"{t:g}" for t in defaults["thresholds"]),
        key="sbd_eval_thresholds",
    )
    k = cols[1].number_input(
        "Block size k", 1, 16, int(block_size or defaults["block_size"]), key="sbd_eval_k"
    )
    examples = cols[2].number_input(
        "Examples", 1, 1000, int(defaults["eval_examples"]), key="sbd_eval_examples"
    )
    ntp_first = cols[3].toggle(
        "NTP for the first slot", bool(defaults["ntp_first"]), key="sbd_eval_ntp"
    )
    try:
        params = EvalConfig.from_params(
            {
                **defaults,
                "run": run.job,
                "thresholds": _numbers(thresholds, "thresholds"),
                "block_size": int(k),
                "eval_examples": int(examples),
                "ntp_first": bool(ntp_first),
            }
        ).to_params()
    except SubnetScopeError as exc:
        st.error(str(exc))
        return
    job_id = job_launcher(EVAL_KIND, params, label="Evaluate", key="sbd_eval_job")
    if job_id:
        job_watcher(job_id, key="sbd_eval_watch", here=HERE)


# train --------------------------------------------------------------------------------------
def train_panel() -> None:
    """A model, data and SBD options in; an `sbd.train` job out, watched live."""
    from engine.jobs import get_kind

    st.subheader("Fine-tune for set block decoding")
    defaults = get_kind(TRAIN_KIND).defaults
    cols = st.columns(4)
    model = cols[0].text_input("Model", str(defaults["model"]), key="sbd_train_model")
    dataset = cols[1].text_input("Dataset", str(defaults["dataset"]), key="sbd_train_dataset")
    lora = cols[2].toggle(
        "LoRA",
        bool(defaults["lora"]),
        key="sbd_train_lora",
        help="train a LoRA adapter (and the mask token's embedding row) and merge it; off: "
        "every weight trains",
    )
    steps = cols[3].number_input("Steps", 1, 100_000, int(defaults["steps"]), key="sbd_train_steps")
    cols = st.columns(3)
    blocks = cols[0].text_input(
        "Block sizes k",
        str(defaults["block_sizes"]),
        key="sbd_train_blocks",
        help="one k per step, drawn from this range (the paper: 2-16)",
    )
    thresholds = cols[1].text_input(
        "Thresholds γ evaluated at the end",
        " ".join(f"{t:g}" for t in defaults["thresholds"]),
        key="sbd_train_thresholds",
    )
    examples = cols[2].number_input(
        "Evaluation examples", 0, 1000, int(defaults["eval_examples"]), key="sbd_train_examples"
    )
    try:
        params = SBDConfig.from_params(
            {
                **defaults,
                "model": model.strip(),
                "dataset": dataset.strip(),
                "lora": bool(lora),
                "steps": int(steps),
                "block_sizes": blocks.strip(),
                "thresholds": _numbers(thresholds, "thresholds"),
                "eval_examples": int(examples),
            }
        ).to_params()
    except SubnetScopeError as exc:
        st.error(str(exc))
        return
    st.caption(
        "The loss (arXiv 2509.04185 eq. 14): next-token prediction on the clean text plus the "
        "masked-token loss on blocks of k future tokens, a random share of them masked, the block "
        "attending to itself both ways and causally to the past. Then the evaluation runs at "
        "each γ."
    )
    job_id = job_launcher(TRAIN_KIND, params, label="Train", key="sbd_train_job")
    if job_id:
        job_watcher(job_id, key="sbd_train_watch", here=HERE)
