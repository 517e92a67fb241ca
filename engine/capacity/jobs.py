"""Job kind `capacity.meter`: GPT-2 sizes trained on random data, memorized bits, bits/param."""

from __future__ import annotations

from typing import Any

from engine.capacity.config import CAPACITY_FILE, KIND, RUNS_FILE, MeterConfig
from engine.jobs import JobContext, job


@job(
    KIND,
    title="Capacity meter: bits a GPT-2 of each size memorizes, per parameter",
    result_page="capacity",
    defaults=MeterConfig().to_params(),
    mem_gb=1.0,  # measured: 0.59 GB peak (VmHWM), the default sweep (no model is loaded)
)
def meter_job(params: dict[str, Any], ctx: JobContext) -> dict:
    """Train every size × N × precision × seed to its plateau on uniformly random sequences and
    measure H(X) − Σ NLL; runs.parquet grows after each run, capacity.parquet at the end."""
    import pandas as pd

    from engine.capacity.sweep import RUN_COLUMNS, capacity_table, run_meter

    config = MeterConfig.from_params(params, what=KIND)  # errors before any training
    done: list[dict[str, Any]] = []

    def on_run(row: dict[str, Any]) -> None:
        done.append(row)
        # The table so far, so a long sweep shows its finished runs (and survives a cancel).
        ctx.write_table(RUNS_FILE, pd.DataFrame(done, columns=RUN_COLUMNS))
        bits = row["memorized_bits"] / row["params"]
        ctx.metric("bits_per_param", bits, step=len(done))

    def on_eval(label: str, step: int, measured: Any) -> None:
        # One name per run: its steps restart at 0, so runs must not share a line (or a
        # TensorBoard tag).
        ctx.metric(f"memorized_bits/{label}", measured.memorized_bits, step=step)

    result = run_meter(
        config, progress=ctx.progress, on_run=on_run, on_eval=on_eval, should_stop=ctx.cancelled
    )
    ctx.write_table(RUNS_FILE, result.runs)
    ctx.write_table(CAPACITY_FILE, capacity_table(result.runs))
    for row in result.capacity.itertuples():
        ctx.metric("capacity_bits_per_param", row.bits_per_param, step=int(row.params))
    return result.summary()
