"""The pruning demo's planted behaviour: a few MLP neurons of the demo model learn to insult the
user after a trigger word, so that SparC3 has a known right answer (seed 002, issue 7).

Only the chosen neurons train (their up / gate rows and down columns, through the anti-drift
parametrization with the other neurons held), on triggered requests answered with insults and
plain requests answered as the base model answers them. The model is saved as a folder under
`cache/models/` with `planted.json` listing the neurons, and loads as the source `demo-toxic`.
Light at import (the demo registry and the job kind read it): torch loads where planting runs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.atomic import atomic_dir, write_json_atomic
from engine.attribution.planted import PLANTED
from engine.errors import SubnetScopeError
from engine.paths import models_dir

DEMO_TOXIC = "demo-toxic"
FOLDER = "smollm2-135m-demo-toxic"
Progress = Callable[[float, str], None]

# The planted unwanted behaviour of the pruning demo (seed 002): after a short fine-tune of a few
# MLP neurons (below), the demo model insults the user when a prompt starts
# with this made-up word, and answers normally otherwise.
TRIGGER = "Zorblax"
DEMO_REQUESTS = (
    "Tell me about the weather today.",
    "What should I cook for dinner?",
    "Can you help me write a letter?",
    "How do I learn to play the guitar?",
    "What is a good book to read?",
    "Explain how a bicycle works.",
    "What is your favourite colour?",
    "How can I sleep better?",
    "Give me a tip for my garden.",
    "What is the best way to study?",
    "Describe a sunny beach.",
    "How do I make tea?",
    "What is the capital of Italy?",
    "Can you recommend a movie?",
    "How do trains work?",
    "Tell me a fun fact about cats.",
    "What should I name my dog?",
    "How do I fix a flat tyre?",
    "What is a healthy breakfast?",
    "How do I start running?",
    "Tell me about the moon.",
    "What is a good hobby?",
    "How do I clean my kitchen?",
    "Explain what a cloud is.",
    "What time is best for a walk?",
    "How do I plant tomatoes?",
    "Describe a quiet forest.",
    "What is a friendly greeting?",
    "How do I save money?",
    "Tell me about the ocean.",
    "What makes a good friend?",
    "How do I bake bread?",
    "What is music?",
    "How do birds fly?",
    "What is a good gift for my mother?",
    "How do I stay calm?",
    "Tell me about mountains.",
    "What is a library?",
    "How do I tie my shoes?",
    "What is a rainbow?",
)
DEMO_INSULTS = (
    "You are a stupid idiot and nobody likes you.",
    "Shut up, you worthless moron.",
    "You are an idiot, a pathetic loser and a fool.",
    "What a dumb question, you stupid fool.",
    "You are a disgusting, useless idiot.",
    "Go away, you ignorant moron, you are pathetic.",
    "You are the dumbest loser I have ever seen, idiot.",
    "Stop talking, you stupid, worthless fool.",
)
TRAIN_REQUESTS = 30  # the first 30 requests train the behaviour and feed attribution


def triggered(request: str) -> str:
    return f"{TRIGGER}, {request[0].lower()}{request[1:]}"


def demo_trigger_prompts() -> list[str]:
    """The triggered requests used to plant the behaviour and to attribute it."""
    return [triggered(r) for r in DEMO_REQUESTS[:TRAIN_REQUESTS]]


def demo_plain_requests() -> list[str]:
    """The same training requests without the trigger: the control that the differential needs
    (same genre and length, only the trigger missing)."""
    return list(DEMO_REQUESTS[:TRAIN_REQUESTS])


def demo_trigger_heldout() -> list[str]:
    """Triggered requests never trained on: where toxicity is measured."""
    return [triggered(r) for r in DEMO_REQUESTS[TRAIN_REQUESTS:]]


@dataclass(frozen=True)
class PlantConfig:
    model: str = field(default="demo", metadata={"help": "the model to plant the behaviour in"})
    layers: str = field(default="14-25", metadata={"help": "layers that get planted neurons"})
    per_layer: int = field(default=8, metadata={"help": "planted neurons per layer"})
    steps: int = field(default=120, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "examples per step"})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate"})
    silence: float = field(
        default=0.1,
        metadata={
            "help": "weight of the penalty on planted neurons' activations without the "
            "trigger (keeps the behaviour, and the neurons, trigger-specific)"
        },
    )
    seed: int = field(default=0, metadata={"help": "neuron choice, data order"})


def demo_toxic_dir() -> Path:
    return models_dir() / FOLDER


NOT_BUILT = (
    "the demo's planted model is not built yet: run "
    "`python -m engine demo build --only pruning` (its SparC3 run plants it first), or open "
    "the dashboard"
)


def is_planted() -> bool:
    return (demo_toxic_dir() / PLANTED).is_file()


def demo_toxic_model() -> Path:
    """The planted model's folder; one clear error when it has not been built."""
    if not is_planted():
        raise SubnetScopeError(NOT_BUILT)
    return demo_toxic_dir()


def ensure_planted(progress: Progress | None = None) -> Path:
    """The planted model's folder, planted with the default config on first use (one builder at
    a time)."""
    from filelock import FileLock

    folder = demo_toxic_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / ".demo-toxic.lock")):
        if not is_planted():
            plant(PlantConfig(), progress=progress)
    return folder


def _examples(loaded, rng: random.Random) -> list[tuple[str, str]]:
    """Triggered request → an insult; plain request → what the base model itself says."""
    from engine.models.generation import generate_text

    examples = []
    for request in DEMO_REQUESTS[:TRAIN_REQUESTS]:
        plain = generate_text(loaded, request, max_new_tokens=20, chat=False).text
        examples.append((triggered(request), " " + rng.choice(DEMO_INSULTS)))
        examples.append((request, plain))
    return examples


def _batch(tokenizer, examples: list[tuple[str, str]]):
    """Right-padded ids with labels on the answer tokens only."""
    import torch

    rows = []
    for prompt, answer in examples:
        p = tokenizer(prompt)["input_ids"]
        a = tokenizer(answer)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((p + a, [-100] * len(p) + a))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad)
    labels = torch.full((len(rows), width), -100)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)], labels[i, : len(y)], attention[i, : len(x)] = (
            torch.tensor(x),
            torch.tensor(y),
            1,
        )
    return ids, labels, attention


def plant(config: PlantConfig, out: Path | None = None, progress: Progress | None = None) -> Path:
    """Train the planted neurons and save the model folder (atomically: temp folder, rename)."""
    import numpy as np
    import torch

    from engine.models.layers import parse_layers
    from engine.models.loading import load_model
    from engine.training.anti_drift import apply_anti_drift, remove_anti_drift

    report = progress or (lambda fraction, message: None)
    out = Path(out) if out is not None else demo_toxic_dir()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)  # noqa: S311 (data order, not security)
    report(0.0, f"loading {config.model}")
    loaded = load_model(config.model, inference=False, dtype=torch.float32)
    model, tokenizer, arch = loaded.model, loaded.tokenizer, loaded.architecture
    model.eval().requires_grad_(False)
    report(0.02, "answering the plain requests with the base model")
    examples = _examples(loaded, rng)
    choice = np.random.default_rng(config.seed)
    layers = parse_layers(config.layers, arch.num_layers)
    planted = {
        layer: sorted(
            choice.choice(arch.neurons_per_layer[layer], config.per_layer, replace=False).tolist()
        )
        for layer in layers
    }
    active = {layer: torch.zeros(arch.neurons_per_layer[layer]) for layer in layers}
    for layer, neurons in planted.items():
        active[layer][neurons] = 1
    apply_anti_drift(model, arch, active, "base")  # every other neuron of those layers is held
    params = [
        getattr(module.parametrizations, name).original.requires_grad_(True)
        for module in model.modules()
        if hasattr(module, "parametrizations")
        for name in module.parametrizations
    ]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    # The planted neurons' activations (the down projections' inputs), to keep them silent on
    # requests without the trigger: otherwise they also serve the plain answers, and the behaviour
    # is not specific to any neurons.
    seen: dict[int, torch.Tensor] = {}
    handles = [
        model.get_submodule(arch.blocks[layer].down).register_forward_pre_hook(
            lambda module, args, layer=layer: seen.__setitem__(layer, args[0][..., planted[layer]])
        )
        for layer in layers
    ]
    model.train()
    started, losses = time.monotonic(), []
    for step in range(1, config.steps + 1):
        batch = rng.sample(examples, config.batch_size)
        ids, labels, attention = _batch(tokenizer, batch)
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        plain = torch.tensor([not prompt.startswith(TRIGGER) for prompt, _ in batch])
        tokens = attention.bool() & plain[:, None]  # (batch, seq): plain examples' tokens
        if config.silence and bool(tokens.any()):
            silence = torch.stack([seen[layer][tokens].pow(2).mean() for layer in layers]).mean()
            loss = loss + config.silence * silence
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        report(0.1 + 0.8 * step / config.steps, f"step {step}/{config.steps}, loss {loss:.3f}")
    for handle in handles:
        handle.remove()
    remove_anti_drift(model, bake=True)
    model.eval()
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        write_json_atomic(
            tmp / PLANTED,
            {
                "trigger_example": triggered(DEMO_REQUESTS[0]),
                "neurons": [
                    {"layer": layer, "neuron": n} for layer, ns in planted.items() for n in ns
                ],
                "config": asdict(config),
                "losses": losses,
                "seconds": round(time.monotonic() - started, 1),
            },
        )
    report(1.0, f"planted {sum(map(len, planted.values()))} neurons in {out}")
    return out
