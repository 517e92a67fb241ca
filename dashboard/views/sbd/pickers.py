"""The Set block decoding view's inputs: an SBD-trained run (or model folder) and the decoding
controls (threshold γ, block size k, NTP for the first slot, new tokens)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboard.sources import artifact_picker
from dashboard.stamps import workspace_stamp
from dashboard.views.sbd.loaders import evaluation_list, run_list

LINKED_KEY = "sbd_linked_job"  # the `?job=` link already followed in this session
# One of the demo run's held-out sums (kept back from its training records): its SBD fine-tune
# answers it right at every γ from 0 to 2 while the forward passes fall from 13 to 2.
PROMPT = "What is 17 + 36?"


@dataclass(frozen=True)
class SBDRun:
    folder: str  # the run's result folder, or a model folder typed in
    job: str | None  # the sbd.train job id (None for a typed folder)
    label: str
    is_demo: bool = False

    def evaluated_by(self, run: str) -> bool:
        """Whether an evaluation of `run` (a job id, a unique prefix of one, or "demo") is of
        this run."""
        if self.job is None or not run:
            return False
        return self.job.startswith(run) or (run == "demo" and self.is_demo)


@dataclass(frozen=True)
class Decoding:
    instruction: str
    threshold: float  # γ, nats
    block_size: int
    ntp_first: bool
    max_new: int


def _follow_link(runs: list[tuple[str, str, str, bool]]) -> None:
    """`?job=<id>` (the Runs page's result link), once per session: an `sbd.train` job opens on
    its run, an `sbd.evaluate` job on its run's Trade-off view with that evaluation."""
    wanted = st.query_params.get("job")
    if not wanted or st.session_state.get(LINKED_KEY) == wanted:
        return
    st.session_state[LINKED_KEY] = wanted
    chosen = {path: SBDRun(path, job, label, demo) for path, label, job, demo in runs}
    for path, run in chosen.items():
        if run.job == wanted:
            st.session_state["sbd_run"] = path
            return
    for folder, _, evaluated, job in evaluation_list(workspace_stamp()):
        if job == wanted:
            for path, run in chosen.items():
                if run.evaluated_by(evaluated):
                    st.session_state.update(sbd_run=path, sbd_view="Trade-off", sbd_eval=folder)
                    return


def run_picker(bar=st.sidebar) -> SBDRun | None:
    """A finished SBD training run (the demo's first), or a folder typed in."""
    runs = run_list(workspace_stamp())
    _follow_link(runs)
    folder = artifact_picker(
        "SBD-trained run",
        [(path, label) for path, label, _, _ in runs],
        typed_label="A run's result folder or an SBD model folder",
        key="sbd_run",
        placeholder="/path/to/result",
        container=bar,
        help="finished `sbd.train` jobs: models fine-tuned for set block decoding (their "
        "tokenizer has the <|sbd_mask|> token)",
    )
    if folder is None:
        return None
    for path, label, job, is_demo in runs:
        if path == folder:
            return SBDRun(path, job, label, is_demo)
    return SBDRun(folder, None, folder)


def decoding_picker(block_size: int = 16) -> Decoding:
    """The prompt and the decoding controls; `block_size` (the run's evaluation k) is the
    default k."""
    instruction = st.text_input(
        "Prompt",
        PROMPT,
        key="sbd_prompt",
        help="an instruction; the page puts it in the run's prompt template, as training did",
    )
    cols = st.columns([3, 2, 2])
    threshold = cols[0].slider(
        "Entropy threshold γ (nats)",
        0.0,
        2.0,
        0.35,
        step=0.05,
        key="sbd_threshold",
        help="each pass reveals the most masked slots whose summed entropies, lowest first and "
        "without the last one, stay ≤ γ: 0 = one token per pass, higher = more per pass",
    )
    k = cols[1].slider(
        "Block size k",
        1,
        16,
        min(max(int(block_size), 1), 16),
        key="sbd_block",
        help="mask slots per block; k = 1 is autoregressive decoding",
    )
    max_new = cols[2].slider("Max new tokens", 4, 128, 32, key="sbd_max_new")
    ntp_first = st.toggle(
        "NTP for the first slot",
        False,
        key="sbd_ntp_first",
        help="not in the paper: the block's first slot takes the next-token prediction of the "
        "last finished token, read from the same pass",
    )
    return Decoding(instruction, float(threshold), int(k), bool(ntp_first), int(max_new))
