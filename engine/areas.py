"""Every engine area in one table: its CLI words, the module with its job kinds, its page.

Adding an area is one row here (plus the area's folder and, if it has a view, its page). The
table holds only names: nothing here imports an area, so any layer may read it. The CLI, the job
registry and the dashboard's navigation load what a row names, by name, when they need it; that is
how a lower layer (the job registry) reaches the kinds defined above it without an import arrow
pointing up (see docs/architecture.md, "Layers").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    word: str  # `python -m engine <word> ...`
    help: str


@dataclass(frozen=True)
class Page:
    file: str  # under pages/
    title: str
    icon: str
    section: str  # the navigation section: Explore | Analyse | Runs
    question: str  # the one question the view answers (the Home page lists them)

    @property
    def url_path(self) -> str:
        return self.file.removesuffix(".py")


@dataclass(frozen=True)
class Area:
    name: str  # the folder under engine/
    commands: tuple[Command, ...] = ()  # the words the area's `cli.register` adds
    # The module (or modules) whose @job functions define the area's job kinds.
    kinds: str | tuple[str, ...] | None = None
    page: Page | None = None

    @property
    def cli_module(self) -> str:
        return f"engine.{self.name}.cli"


AREAS: tuple[Area, ...] = (
    Area(
        "models",
        (Command("models", "load, inspect and run language models"),),
        kinds="engine.models.jobs",
        page=Page(
            "model.py",
            "Model",
            ":material/memory:",
            "Explore",
            "What is this model made of, and what does it answer?",
        ),
    ),
    Area(
        "tflite",
        (Command("tflite", "read .tflite, .task and .litertlm files"),),
        kinds="engine.tflite.jobs",
        page=Page(
            "tflite.py",
            "TFLite explorer",
            ":material/account_tree:",
            "Explore",
            "What did the edge compiler make of a model: ops, tensors, quantization?",
        ),
    ),
    Area(
        "sparsity",
        (Command("sparsity", "which weights fine-tuning moved (diffs, masks)"),),
        kinds=("engine.sparsity.jobs", "engine.sparsity.shards"),
        page=Page(
            "sparsity.py",
            "Sparsity heatmaps",
            ":material/grid_on:",
            "Analyse",
            "Which weights did SFT or RL change, at what rank, and how localized?",
        ),
    ),
    Area(
        "ica",
        (Command("ica", "functional networks of MLP neurons (seed 001)"),),
        kinds=("engine.ica.jobs", "engine.ica.shards"),
        page=Page(
            "ica.py",
            "ICA components",
            ":material/hub:",
            "Analyse",
            "Which MLP neurons fire together as functional networks?",
        ),
    ),
    Area(
        "attribution",
        (
            Command("attribution", "LRP / Wanda neuron scores (SparC3)"),
            Command("prune", "select, evaluate and apply neuron pruning"),
        ),
        kinds=("engine.attribution.jobs", "engine.attribution.shards"),
        page=Page(
            "pruning.py",
            "Neuron pruning",
            ":material/content_cut:",
            "Analyse",
            "Which neurons carry an unwanted behaviour, and what does pruning cost?",
        ),
    ),
    Area(
        "lora",
        (Command("lora", "blend PEFT adapters, their geometry and deltas; generate from text"),),
        kinds="engine.lora.generator.jobs",
        page=Page(
            "lora.py",
            "LoRA blender",
            ":material/tune:",
            "Analyse",
            "What does each adapter add, and what does a blend of them do?",
        ),
    ),
    Area(
        "attention",
        (
            Command(
                "attention",
                "attention heads: local vs global, fine-tuning changes, localize a layer",
            ),
        ),
        kinds="engine.attention.jobs",
        page=Page(
            "attention.py",
            "Attention",
            ":material/visibility:",
            "Analyse",
            "Which heads look local or global, what did fine-tuning change, can a layer go local?",
        ),
    ),
    Area(
        "capacity",
        (Command("capacity", "memorization capacity: bits per parameter on random data"),),
        kinds="engine.capacity.jobs",
        page=Page(
            "capacity.py",
            "Capacity",
            ":material/database:",
            "Analyse",
            "How many bits can a model of this size memorize, per parameter?",
        ),
    ),
    Area(
        "sbd",
        (Command("sbd", "set block decoding: train for parallel decoding, count forward passes"),),
        kinds="engine.sbd.jobs",
        page=Page(
            "sbd.py",
            "Set block decoding",
            ":material/bolt:",
            "Analyse",
            "How many tokens can one forward pass produce, and at what cost in quality?",
        ),
    ),
    Area(
        "neurons",
        (Command("neuron", "neuron passports and neuron-set overlaps"),),
        kinds="engine.neurons.jobs",
        page=Page(
            "passport.py",
            "Neuron passport",
            ":material/badge:",
            "Analyse",
            "What does every view say about one neuron, and do their sets overlap?",
        ),
    ),
    Area(
        "training",
        (
            Command(
                "train", "fine-tuning runs that track sparse updates, LoRA, ReLoRA and rank-1 runs"
            ),
        ),
        kinds="engine.training.jobs",
    ),
    Area("evaluation", kinds="engine.evaluation.jobs"),
    Area(
        "jobs",
        (Command("jobs", "long work out of process (local or SLURM)"),),
        kinds="engine.jobs.diagnostics",
        page=Page(
            "runs.py",
            "Runs",
            ":material/play_circle:",
            "Runs",
            "Which jobs are running, and what did finished ones produce?",
        ),
    ),
    Area("demo", (Command("demo", "the offline demo workspace"),), kinds="engine.demo.jobs"),
)


# Modules that fill lower layers' registries by name (named model sources, text sets, featured
# adapters): the model zoo's sources and the demo's registry. Lower layers call `load_plugins()`
# before a lookup, so they reach what a higher layer declares without importing it
# (docs/architecture.md, "Layers").
PLUGINS: tuple[str, ...] = ("engine.models.zoo", "engine.demo.registry")


def load_plugins() -> None:
    import importlib

    for module in PLUGINS:
        importlib.import_module(module)


def area_for_command(word: str) -> Area | None:
    return next((a for a in AREAS if any(c.word == word for c in a.commands)), None)


def kind_modules() -> tuple[str, ...]:
    named = (a.kinds for a in AREAS if a.kinds)
    return tuple(m for kinds in named for m in ((kinds,) if isinstance(kinds, str) else kinds))
