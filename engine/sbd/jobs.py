"""Job kinds `sbd.train` (fine-tune for Set Block Decoding, then decode) and `sbd.evaluate`."""

from __future__ import annotations

from typing import Any

from engine.jobs import JobContext, job
from engine.sbd.config import EVAL_KIND, TRAIN_KIND, EvalConfig, SBDConfig


@job(
    TRAIN_KIND,
    title="Set Block Decoding fine-tune: NTP + masked block loss, then SBD vs autoregressive",
    result_page="sbd",
    defaults=SBDConfig().to_params(),
    mem_gb=4.0,
)
def train_job(params: dict[str, Any], ctx: JobContext) -> dict:
    """Fine-tune with the SBD objective; save result/model/; decode the held-out examples."""
    from engine.sbd.train import run_sbd

    config = SBDConfig.from_params(params, what=TRAIN_KIND)  # errors before any loading
    return run_sbd(config, ctx)


@job(
    EVAL_KIND,
    title="SBD evaluation: forward passes and accuracy at each threshold vs autoregressive",
    result_page="sbd",
    defaults=EvalConfig().to_params(),
    mem_gb=2.5,  # measured: 1.71 GB peak (VmHWM), the demo model and a tuned copy in fp32
)
def evaluate_job(params: dict[str, Any], ctx: JobContext) -> dict:
    """SBD decoding of a finished fine-tune at each entropy threshold against autoregressive
    decoding of the same model on held-out examples; the base model scores the generations."""
    from engine.sbd.evaluate import run_evaluation

    config = EvalConfig.from_params(params, what=EVAL_KIND)  # errors before any model loads
    return run_evaluation(config, ctx)
