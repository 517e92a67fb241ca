"""Generating an adapter against training one (issue 20, seed 004: DnD reports orders of magnitude).

On the demo's generator and its held-out task: the generated side is the seconds from typed prompts
to factors (prompt encoding + one generator forward; the encoder and generator are loaded once,
not timed), and the held-out response loss its adapter reaches. The baseline trains a LoRA of the
same rank, alpha and targets as the teachers (PEFT, the same seeded init, learning rate, batch and
task examples as `train.lora_teachers`) on the held-out task's own training examples, and counts
the optimizer-step seconds until its held-out response loss is at most the generated adapter's
(scored after every step, not timed). If training never gets there within MAX_STEPS, the result
says so and its time is a lower bound.
"""

from __future__ import annotations

import sys
import time

import torch

from benchmarks.runner import Result, benchmark, compare
from engine.errors import SubnetScopeError

MAX_STEPS = 200
N_PROMPTS = 8


def _train_until(loaded, config, task: str, pairs, target: float, max_length: int) -> dict:
    """Optimizer seconds (and steps) until the held-out response loss is ≤ target."""
    from peft import get_peft_model

    from engine.data.lora_tasks import LORA_TASKS
    from engine.lora.generator.evaluate import response_loss
    from engine.models.devices import input_device
    from engine.training.config import LoRARunConfig
    from engine.training.lora_runs import lora_config
    from engine.training.teachers import _order, task_data, text_batch

    data = task_data(config, LORA_TASKS[task], loaded.tokenizer)
    lora = LoRARunConfig(
        model=config.model,
        lora_rank=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=config.target_modules,
    )
    torch.manual_seed(config.seed)
    peft_model = get_peft_model(loaded.model, lora_config(lora))
    params = [p for n, p in peft_model.named_parameters() if "lora_" in n and p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    steps = max(MAX_STEPS, config.steps)
    longer = type(config).from_params({**config.to_params(), "steps": steps})
    order = _order(longer, task, len(data.train_texts))
    device = input_device(peft_model)
    seconds, losses = 0.0, []
    try:
        for step in range(1, steps + 1):
            picked = order[(step - 1) * config.batch_size : step * config.batch_size]
            batch = text_batch(
                loaded.tokenizer, [data.train_texts[i] for i in picked], max_length, device
            )
            started = time.perf_counter()
            loss = peft_model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds += time.perf_counter() - started
            # get_peft_model wrapped loaded.model's modules: this scores the adapter being trained.
            value = response_loss(loaded, pairs, None, max_length)
            losses.append(value)
            if value <= target:
                return {"seconds": seconds, "steps": step, "reached": True, "losses": losses}
        return {"seconds": seconds, "steps": steps, "reached": False, "losses": losses}
    finally:
        peft_model.unload()


@benchmark("lora_generator", repeats=5)
def lora_generator(repeats: int) -> list[Result]:
    """Seconds from prompts to an adapter, against training one to the same held-out loss."""
    from engine.lora.generator.evaluate import response_loss
    from engine.lora.generator.generate import encoder_for, generate_adapter, open_generator
    from engine.lora.generator.teachers import open_teachers
    from engine.models import load_model
    from engine.training.teachers_config import TeachersConfig

    try:
        gen_run = open_generator("demo")
    except SubnetScopeError as exc:
        print(f"lora_generator skipped: {exc}", file=sys.stderr)
        return []
    run = open_teachers(gen_run.meta["teachers"])
    task = gen_run.meta["held_out"][0]
    config = TeachersConfig.from_params(run.manifest["config"])
    loaded = load_model(run.model, dtype="fp32", inference=False)
    loaded.model.eval().requires_grad_(False)
    encoder = encoder_for(gen_run, loaded)
    prompts = list(run.tasks[task]["heldout_prompts"])[:N_PROMPTS]
    pairs = run.heldout_pairs(task)
    generate_adapter(gen_run, prompts, loaded, encoder)  # warm-up
    gen_seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        adapter = generate_adapter(gen_run, prompts, loaded, encoder)
        gen_seconds.append(time.perf_counter() - started)
    target = response_loss(loaded, pairs, adapter.factors, run.max_length)
    base = response_loss(loaded, pairs, None, run.max_length)
    trained = _train_until(loaded, config, task, pairs, target, run.max_length)
    details = {
        "task": task,
        "prompts": len(prompts),
        "base_loss": round(base, 4),
        "generated_loss": round(target, 4),
        "training_steps": trained["steps"],
        "training_reached": trained["reached"],
        "training_losses": [round(v, 4) for v in trained["losses"]],
        "generator_parameters": gen_run.meta.get("parameters"),
    }
    note = "" if trained["reached"] else f" (not reached in {trained['steps']} steps: a bound)"
    return [
        compare(
            "lora_generator",
            "seconds from prompts to an adapter (encode + one generator forward)",
            gen_seconds,
            "LoRA training (same rank, init, lr, batch) until its held-out response loss is "
            f"≤ the generated adapter's{note}",
            [trained["seconds"]],
            details=details,
        )
    ]
