"""The dashboard's pages by section: the app routes with this list, the browser test walks it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"


@dataclass(frozen=True)
class PageSpec:
    file: str  # under pages/
    title: str
    icon: str
    url_path: str
    default: bool = False
    question: str = ""  # the one question the view answers (the Home page lists them)

    @property
    def path(self) -> Path:
        return PAGES_DIR / self.file

    @property
    def url(self) -> str:
        """The URL path Streamlit serves the page at (the default page lives at the root)."""
        return "" if self.default else self.url_path


# A view enters the navigation when its issue lands.
SECTIONS: dict[str, list[PageSpec]] = {
    "Start": [
        PageSpec("home.py", "Home", ":material/home:", "home", default=True),
    ],
    "Explore": [
        PageSpec(
            "model.py",
            "Model",
            ":material/memory:",
            "model",
            question="What is this model made of, and what does it answer?",
        ),
        PageSpec(
            "tflite.py",
            "TFLite explorer",
            ":material/account_tree:",
            "tflite",
            question="What did the edge compiler make of a model: ops, tensors, quantization?",
        ),
    ],
    "Analyse": [
        PageSpec(
            "sparsity.py",
            "Sparsity heatmaps",
            ":material/grid_on:",
            "sparsity",
            question="Which weights did SFT or RL change, at what rank, and how localized?",
        ),
        PageSpec(
            "ica.py",
            "ICA components",
            ":material/hub:",
            "ica",
            question="Which MLP neurons fire together as functional networks?",
        ),
        PageSpec(
            "pruning.py",
            "Neuron pruning",
            ":material/content_cut:",
            "pruning",
            question="Which neurons carry an unwanted behaviour, and what does pruning cost?",
        ),
        PageSpec(
            "lora.py",
            "LoRA blender",
            ":material/tune:",
            "lora",
            question="What does each adapter add, and what does a blend of them do?",
        ),
        PageSpec(
            "passport.py",
            "Neuron passport",
            ":material/badge:",
            "passport",
            question="What does every view say about one neuron, and do their sets overlap?",
        ),
    ],
    "Runs": [
        PageSpec(
            "runs.py",
            "Runs",
            ":material/play_circle:",
            "runs",
            question="Which jobs are running, and what did finished ones produce?",
        ),
    ],
}


def all_pages() -> list[PageSpec]:
    return [page for pages in SECTIONS.values() for page in pages]


def page_for(url_path: str) -> PageSpec | None:
    """The page served at `url_path` (how job kinds name their result page), if it is listed."""
    return next((page for page in all_pages() if page.url_path == url_path), None)
