"""The dashboard's pages by section, from engine/areas.py: the app routes with it, tests walk it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.areas import AREAS

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


HOME = PageSpec("home.py", "Home", ":material/home:", "home", default=True)


def _sections() -> dict[str, list[PageSpec]]:
    """Home, then every area's page (engine/areas.py) under its section, in the table's order."""
    sections: dict[str, list[PageSpec]] = {"Start": [HOME]}
    for area in AREAS:
        if area.page is not None:
            p = area.page
            spec = PageSpec(p.file, p.title, p.icon, p.url_path, question=p.question)
            sections.setdefault(p.section, []).append(spec)
    return sections


SECTIONS: dict[str, list[PageSpec]] = _sections()


def all_pages() -> list[PageSpec]:
    return [page for pages in SECTIONS.values() for page in pages]


def page_for(url_path: str) -> PageSpec | None:
    """The page served at `url_path` (how job kinds name their result page), if it is listed."""
    return next((page for page in all_pages() if page.url_path == url_path), None)
