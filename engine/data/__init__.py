"""Text data: local files, the offline demo corpus, hub datasets, seeded samples, token windows."""

from engine.data.corpus import demo_code_corpus, demo_general_corpus
from engine.data.sources import DEMO_CODE, DEMO_GENERAL, TextSource, load_texts, sample_texts
from engine.data.windows import token_windows

__all__ = [
    "DEMO_CODE",
    "DEMO_GENERAL",
    "TextSource",
    "demo_code_corpus",
    "demo_general_corpus",
    "load_texts",
    "sample_texts",
    "token_windows",
]
