"""Everything the offline demo declares, in one file: its parts (the jobs that build each view's
share), its planted model and its named prompt sets.

Importing this module registers the planted model with engine.models.sources and the prompt sets
with engine.data.sources; those lower layers import it by name (engine.areas.PLUGINS) before a
lookup. Light at import: no torch, no transformers (`demo status` reads it). A part whose results
a lower area's catalog finds first keeps its params in that area (DEMO_PARAMS, DEMO_SPARC3,
DEMO_ACTIVATIONS, DEMO_ADAPTERS): the catalog sits below the demo and cannot import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import engine.demo.planted as planted
from engine.attention.config import CONTEXT_KIND, DEMO_CONTEXT, DEMO_SWEEP, SWEEP_KIND
from engine.attribution.config import DEMO_SPARC3
from engine.capacity.config import DEMO_METER
from engine.capacity.config import KIND as CAPACITY_KIND
from engine.data.corpus import demo_code_corpus, demo_general_corpus
from engine.data.sources import DEMO_CODE, DEMO_GENERAL, register_texts
from engine.ica.catalog import DEMO_PARAMS
from engine.lora.catalog import DEMO_ADAPTERS
from engine.lora.generator.config import (
    DEMO_GENERATOR,
    DEMO_GENERATOR_WEIGHT,
    DEMO_TEACHERS,
    GENERATOR_KIND,
    TEACHERS_KIND,
)
from engine.models.sources import NamedSource, register_source
from engine.neurons.config import DEMO_ACTIVATIONS
from engine.neurons.config import KIND as ACTIVATIONS
from engine.sbd.config import DEMO_SBD
from engine.sbd.config import TRAIN_KIND as SBD_KIND


@dataclass(frozen=True)
class DemoPart:
    name: str
    title: str
    job_kind: str
    params: dict[str, Any] = field(default_factory=dict)
    view: str | None = None  # url path of the page that uses it
    is_ready: Callable[[], bool] | None = None  # None: a succeeded job with these params


def _demo_model_ready() -> bool:
    from engine.models.demo import demo_is_ready

    return demo_is_ready()


DEMO_GRPO = {
    "model": "demo",
    "reward": "brevity",
    "steps": 24,
    "batch_size": 4,
    "num_generations": 4,
    "lr": 1e-5,
    "checkpoint_every": 8,
    "max_completion_length": 24,
}

# In the order `demo build` submits them.
PARTS: tuple[DemoPart, ...] = (
    DemoPart(
        name="model",
        title="SmolLM2-135M-Instruct as safetensors",
        job_kind="models.prepare_demo",
        view="model",
        is_ready=_demo_model_ready,
    ),
    DemoPart(
        name="baseline-perplexity",
        title="Demo model perplexity on the general corpus",
        job_kind="eval.perplexity",
        params={"model": "demo", "text": "demo-general", "max_tokens": 2048, "stride": 256},
        view="runs",
    ),
    DemoPart(
        name="sft-run",
        title="SFT run on the demo model (bf16 weights)",
        job_kind="train.sft",
        # bf16 like the RL runs, so SFT against RL compares methods, not precisions.
        params={
            "model": "demo",
            "dataset": "demo-general",
            "steps": 30,
            "batch_size": 4,
            "lr": 1e-5,
            "checkpoint_every": 10,
            "max_length": 64,
            "precision": "bf16",
        },
        view="sparsity",
    ),
    DemoPart(
        name="grpo-run",
        title="GRPO run on the demo model (brevity reward, bf16 weights)",
        job_kind="train.grpo",
        # bf16 weights as seed 000's Gemma runs: the RL update's sparsity the seed reports.
        params={**DEMO_GRPO, "precision": "bf16"},
        view="sparsity",
    ),
    DemoPart(
        name="grpo-run-fp32",
        title="The same GRPO run in fp32 (why an fp32 run looks dense)",
        job_kind="train.grpo",
        params={**DEMO_GRPO, "precision": "fp32"},
        view="sparsity",
    ),
    DemoPart(
        name="ppo-run",
        title="PPO run on the demo model (non-toxicity reward, shared value head, bf16)",
        job_kind="train.ppo",
        # Seed 000's set-up scaled to the demo: a classifier-like logit-difference reward that
        # ships offline, the value head on the policy's trunk, bf16 weights, τ = 1e-6 + ranks.
        params={
            "model": "demo",
            "reward": "non_toxicity",
            "steps": 12,
            "batch_size": 4,
            "lr": 1e-5,
            "checkpoint_every": 4,
            "max_completion_length": 24,
            "precision": "bf16",
            "value_head": "shared",
            "tolerance": 1e-6,
            "ranks": True,
        },
        view="sparsity",
    ),
    *(
        DemoPart(name=name, title=title, job_kind="train.lora", params=params, view="lora")
        for name, (title, params) in DEMO_ADAPTERS.items()
    ),
    DemoPart(
        name="lora-teachers",
        title="Teacher LoRA adapters on the demo's small tasks, with checkpoints (seed 004)",
        job_kind=TEACHERS_KIND,
        params=DEMO_TEACHERS,
        view="lora",
    ),
    DemoPart(
        name="lora-generator",
        title="LoRA generator from prompts (weight + delta losses; task 'sub' held out)",
        job_kind=GENERATOR_KIND,
        params=DEMO_GENERATOR,  # waits for lora-teachers when both are queued
        view="lora",
    ),
    DemoPart(
        name="lora-generator-weight",
        title="The same generator trained on the weight loss alone (the baseline)",
        job_kind=GENERATOR_KIND,
        params=DEMO_GENERATOR_WEIGHT,
        view="lora",
    ),
    DemoPart(
        name="ica-templates",
        title="ICA templates on the demo model (prose vs code)",
        job_kind="ica.build_templates",
        params=DEMO_PARAMS,
        view="ica",
    ),
    DemoPart(
        name="pruning",
        title="Planted trigger behaviour, found and pruned by SparC3 (LRP), checked by ablation",
        job_kind="prune.sparc3",
        params=DEMO_SPARC3,  # its first run plants the model (engine/demo/planted.py)
        view="pruning",
    ),
    DemoPart(
        name="neuron-activations",
        title="Neuron activations on the demo model (general prose)",
        job_kind=ACTIVATIONS,
        params=DEMO_ACTIVATIONS,
        view="passport",
    ),
    DemoPart(
        name="attention-sweep",
        title="Localize sweep: the loss of making each layer local (w = 32, 4 texts × 256 tokens)",
        job_kind=SWEEP_KIND,
        params=DEMO_SWEEP,
        view="attention",
    ),
    DemoPart(
        name="attention-context",
        title="Attention head statistics against context length (128 → 2048 tokens)",
        job_kind=CONTEXT_KIND,
        params=DEMO_CONTEXT,
        view="attention",
    ),
    DemoPart(
        name="capacity",
        title="Memorization capacity: GPT-2 sizes 1L×d8/16/32 on random data (fp32)",
        job_kind=CAPACITY_KIND,
        params=DEMO_METER,
        view="capacity",
    ),
    DemoPart(
        name="sbd",
        title="Set Block Decoding: the demo model fine-tuned on two-digit sums, vs autoregressive",
        job_kind=SBD_KIND,
        params=DEMO_SBD,
        view="sbd",
    ),
)

# The pruning demo's model: the demo model with a planted trigger behaviour.
PLANTED_MODELS: tuple[NamedSource, ...] = (
    NamedSource(
        name=planted.DEMO_TOXIC,
        label="SmolLM2-135M with a planted trigger (demo-toxic)",
        path=planted.demo_toxic_dir,
        ready=planted.is_planted,
        build=planted.ensure_planted,
        missing=planted.NOT_BUILT,
    ),
)

# The demo's two corpora: built-in text sources (engine/data/corpus.py) that every area's configs
# default to, so they live in data/ and are listed here, not registered again.
CORPORA = {
    DEMO_GENERAL: demo_general_corpus,  # prose: the interpreter's own documentation topics
    DEMO_CODE: demo_code_corpus,  # Python: functions and classes of the standard library
}

# The pruning demo's prompt sets (engine/demo/planted.py), by the names its configs use.
TEXTS = {
    "demo-trigger-prompts": planted.demo_trigger_prompts,
    "demo-trigger-heldout": planted.demo_trigger_heldout,
    "demo-plain-requests": planted.demo_plain_requests,
}

for _source in PLANTED_MODELS:
    register_source(_source)
for _name, _texts in TEXTS.items():
    register_texts(_name, _texts)
