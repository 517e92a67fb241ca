"""Built-in instruction data for the offline demo: a small task the demo model learns in minutes."""

from __future__ import annotations

import numpy as np

DEMO_ARITHMETIC = "demo-arithmetic"


def demo_arithmetic_records(n: int = 400, seed: int = 0) -> list[dict]:
    """Two-digit sums as instruction/response pairs ("What is 17 + 25?" → "17 + 25 = 42.").

    A new task for masked fine-tuning: its held-out loss falls quickly, while held-out prose
    measures forgetting."""
    rng = np.random.default_rng(seed)
    records = []
    for a, b in rng.integers(10, 100, size=(n, 2)).tolist():
        records.append({"instruction": f"What is {a} + {b}?", "response": f"{a} + {b} = {a + b}."})
    return records
