"""Finished SBD fine-tunes and their evaluations, as the SBD view and CLI list them: the demo's
first."""

from __future__ import annotations

from dataclasses import replace

from engine.errors import SubnetScopeError
from engine.jobs.finished import FinishedResult, finished_results
from engine.sbd.config import DEMO_SBD, EVAL_FILE, EVAL_KIND, MODEL_DIR, RUN_JSON, TRAIN_KIND


def _has_model(result: FinishedResult) -> bool:
    return (result.path / MODEL_DIR / "config.json").is_file()


def sbd_runs(limit: int = 200) -> list[FinishedResult]:
    """Succeeded `sbd.train` jobs with their run.json and saved model, the demo part's first."""
    return [
        r for r in finished_results(TRAIN_KIND, RUN_JSON, DEMO_SBD, limit=limit) if _has_model(r)
    ]


def find_run(run: str) -> FinishedResult:
    """The finished fine-tune that `run` names: an `sbd.train` job id (a unique prefix is enough)
    or "demo", the demo part's."""
    from engine.jobs.api import get_job
    from engine.jobs.files import RESULT

    run = run.strip()
    if run == "demo":
        demo = [r for r in sbd_runs() if r.is_demo]
        if not demo:
            raise SubnetScopeError(
                "the demo's SBD fine-tune is not built yet; build it with `python -m engine demo "
                "build` or train one with `python -m engine sbd train`"
            )
        return demo[0]
    view = get_job(run)
    if view.spec.kind != TRAIN_KIND:
        raise SubnetScopeError(f"job {view.id} is a {view.spec.kind} job, not an {TRAIN_KIND} run")
    result = FinishedResult(
        view, view.path / RESULT, all(view.spec.params.get(k) == v for k, v in DEMO_SBD.items())
    )
    if view.status.state != "succeeded" or not _has_model(result):
        raise SubnetScopeError(
            f"{TRAIN_KIND} job {view.id} has no saved model ({view.status.state}); pick a "
            "succeeded run"
        )
    return result


def evaluations(limit: int = 200) -> list[FinishedResult]:
    """Every trade-off table: the fine-tunes' own (evaluated at the end of training; the demo's
    first), then the `sbd.evaluate` jobs', newest first."""
    trained = finished_results(TRAIN_KIND, EVAL_FILE, DEMO_SBD, limit=limit)
    evaluated = finished_results(EVAL_KIND, EVAL_FILE, {}, limit=limit)
    # An evaluate job is never the demo part, even when it re-evaluates the demo's run.
    return trained + [replace(r, is_demo=False) for r in evaluated]


def run_label(result: FinishedResult) -> str:
    """A picker's line for a fine-tune or an evaluation: what it is, then its job id."""
    params = result.params
    if result.view.spec.kind == EVAL_KIND:
        thresholds = ", ".join(f"{t:g}" for t in params.get("thresholds", ()))
        what = f"evaluation of {params.get('run', '?')} at γ {thresholds or '?'}"
        what += ", NTP first slot" if params.get("ntp_first") else ""
    else:
        method = "LoRA" if params.get("lora") else "full"
        what = (
            f"{params.get('model', '?')} {method} SBD fine-tune, {params.get('steps', '?')} "
            f"steps, k {params.get('block_sizes', '?')}"
        )
    return f"{'demo · ' if result.is_demo else ''}{what} · {result.view.id}"
