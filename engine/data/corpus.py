"""An offline general-English corpus: the interpreter's own documentation topics (`pydoc_data`)."""

from __future__ import annotations

import re
from functools import lru_cache

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_HEADING_RULE = re.compile(r"^[*=\-^~]{3,}$")
_SENTENCE_END = re.compile(r"[.?!:][\"\u201d\u2019)]*$")
# The topics put curly quotes (\u2018 \u2019 \u201c \u201d) around words and in contractions.
_WORD = re.compile(r"^[(\u201c\"\u2018]*[A-Za-z][a-z\u2019'-]*[)\u201d\"\u2019.,;:?!]*$")


def _is_prose(paragraph: str) -> bool:
    # The topics mix prose with headings, grammar rules and code samples; a paragraph counts as
    # prose when it ends like a sentence and at least 3 in 4 of its tokens are plain words.
    lines = paragraph.strip("\n").splitlines()
    if len(lines) >= 2 and _HEADING_RULE.match(lines[1].strip()):
        return False
    if "::=" in paragraph or ">>>" in paragraph:
        return False
    tokens = paragraph.split()
    if len(tokens) < 5 or not _SENTENCE_END.search(tokens[-1]):
        return False
    return sum(bool(_WORD.match(t)) for t in tokens) / len(tokens) >= 0.75


@lru_cache(maxsize=4)
def _corpus(min_chars: int) -> tuple[str, ...]:
    from pydoc_data.topics import topics

    documents = []
    for name in sorted(topics):
        pending = ""
        # Consecutive prose paragraphs of one topic are joined until a document is long enough.
        for paragraph in _PARAGRAPH_BREAK.split(topics[name]):
            if not _is_prose(paragraph):
                pending = ""
                continue
            pending = f"{pending} {' '.join(paragraph.split())}".strip()
            if len(pending) >= min_chars:
                documents.append(pending)
                pending = ""
    return tuple(documents)


def demo_general_corpus(min_chars: int = 200) -> list[str]:
    """Paragraph-sized English documents from Python's documentation topics, in a fixed order.

    The text ships with the interpreter, so it is the same on every machine with the same Python
    version and needs no network.
    """
    return list(_corpus(min_chars))


# Pure-Python standard-library modules: a code corpus that contrasts with the prose above.
_CODE_MODULES = (
    "argparse",
    "bisect",
    "calendar",
    "colorsys",
    "csv",
    "dataclasses",
    "difflib",
    "fractions",
    "functools",
    "heapq",
    "json.decoder",
    "json.encoder",
    "pprint",
    "queue",
    "shlex",
    "statistics",
    "string",
    "textwrap",
)
_TOP_LEVEL = re.compile(r"^(?=(?:def|class|async def) )", re.MULTILINE)


@lru_cache(maxsize=4)
def _code(min_chars: int, max_chars: int) -> tuple[str, ...]:
    import importlib.util

    documents = []
    for name in _CODE_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        with open(spec.origin, encoding="utf-8") as f:
            source = f.read()
        for block in _TOP_LEVEL.split(source)[1:]:  # the part before the first def is imports
            block = block.strip()
            if len(block) >= min_chars:
                documents.append(block[:max_chars])
    return tuple(documents)


def demo_code_corpus(min_chars: int = 200, max_chars: int = 1500) -> list[str]:
    """Top-level functions and classes of pure-Python standard-library modules, in a fixed order.

    Like the prose corpus it ships with the interpreter; the demo's ICA templates use the pair so
    that some components separate code from prose.
    """
    return list(_code(min_chars, max_chars))
