"""The Model view: facts, architecture tables, generation playground, perplexity."""

from __future__ import annotations

from dashboard.views.model.panels import (
    architecture_section,
    facts_header,
    perplexity_section,
    playground,
)

__all__ = ["architecture_section", "facts_header", "perplexity_section", "playground"]
