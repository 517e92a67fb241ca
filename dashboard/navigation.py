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

    @property
    def path(self) -> Path:
        return PAGES_DIR / self.file

    @property
    def url(self) -> str:
        """The URL path Streamlit serves the page at (the default page lives at the root)."""
        return "" if self.default else self.url_path


# A view enters the navigation when its issue lands.
SECTIONS: dict[str, list[PageSpec]] = {
    "Explore": [
        PageSpec("model.py", "Model", ":material/memory:", "model", default=True),
        PageSpec("tflite.py", "TFLite explorer", ":material/account_tree:", "tflite"),
    ],
    "Analyse": [
        PageSpec("sparsity.py", "Sparsity heatmaps", ":material/grid_on:", "sparsity"),
        PageSpec("ica.py", "ICA components", ":material/hub:", "ica"),
        PageSpec("pruning.py", "Neuron pruning", ":material/content_cut:", "pruning"),
        PageSpec("lora.py", "LoRA blender", ":material/tune:", "lora"),
    ],
    "Runs": [
        PageSpec("runs.py", "Runs", ":material/play_circle:", "runs"),
    ],
}


def all_pages() -> list[PageSpec]:
    return [page for pages in SECTIONS.values() for page in pages]


def page_for(url_path: str) -> PageSpec | None:
    """The page served at `url_path` (how job kinds name their result page), if it is listed."""
    return next((page for page in all_pages() if page.url_path == url_path), None)
