"""Probe texts for delta activations (seed 004): shipped sets or a file.

`generic`, `math`, `code`, `commonsense` and `mixed` are the seed's own probes, verbatim: the five
instruction templates of the Delta Activations paper and LLGBM's five probes per domain
(`create_generic_probes`, `create_domain_probes`, `create_mixed_probes` in LLGBM's probes.py).
The `wide*`, `prose` and `instructions` sets are SubnetScope's own, larger sets: deltas over them
are not comparable with the seed's.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import SubnetScopeError

_TASK = "Please provide a response."
_INPUT = "Input."
_BODY = f"\n\n### Instruction:\n{_TASK} Input:{_INPUT}\n\n### Response:"

# The Delta Activations paper's five generic templates (LLGBM `create_generic_probes`).
GENERIC = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request." + _BODY,
    "The task described below requires a response that completes the request accurately." + _BODY,
    "Below is a description of a task. Provide a response that aligns with the requirements."
    + _BODY,
    "The following instruction outlines a task. Generate a response that meets the specified "
    "request." + _BODY,
    "You are given an instruction and input. Write a response that completes the task as "
    "requested." + _BODY,
)

# LLGBM `create_domain_probes(domain)`, five per domain.
MATH = (
    "Solve the following math problem step by step:\nQuestion: What is 2 + 2?\nAnswer:",
    "Calculate the result:\nProblem: Find the derivative of x^2\nSolution:",
    "Mathematical reasoning:\nGiven: A triangle has angles 30, 60, and 90 degrees.\n"
    "Find: The ratio of its sides.\nAnswer:",
    "Arithmetic:\n15 * 7 = ",
    "Word problem: If a train travels 60 miles per hour for 2 hours, how far does it travel?"
    "\nSolution:",
)
CODE = (
    "Write a Python function:\ndef factorial(n):\n    ",
    "Complete the code:\n```python\ndef fibonacci(n):\n    if n <= 1:\n        return n\n    ",
    "Debug this code:\ndef add(a, b):\n    return a - b  # Bug: should be +\nFixed:",
    "Explain this code:\nfor i in range(10):\n    print(i)\nExplanation:",
    "Write a function to reverse a string:\ndef reverse_string(s):\n    ",
)
COMMONSENSE = (
    "Question: What happens when you drop an egg on the floor?\nAnswer:",
    "Complete the sentence: The sun rises in the ",
    "Common knowledge: Water freezes at what temperature in Celsius?\nAnswer:",
    "Reasoning: If all birds can fly, and a penguin is a bird, can a penguin fly?\nAnswer:",
    "What do people typically eat for breakfast?\nAnswer:",
)

WIDE = (
    "The weather today is",
    "Once upon a time, in a small village,",
    "def add(a, b):\n    return",
    "The capital of France is",
    "To make a cup of tea, first",
    "In 1969, the first humans",
    "The derivative of x squared is",
    "Dear customer, thank you for",
    "Photosynthesis is the process by which",
    "My favourite thing about weekends is",
    "The quick brown fox jumps over",
    "SELECT name FROM users WHERE",
    "Question: What is 12 times 7?\nAnswer:",
    "The best way to learn a new language is",
    "Breaking news: scientists have discovered",
    "She opened the door and saw",
    "Translate to French: good morning.",
    "A healthy breakfast usually includes",
    "The stock market fell sharply after",
    "Write a short poem about the sea.",
    "The main causes of the First World War were",
    "import numpy as np\nx = np.",
    "If it rains tomorrow, we will",
    "Summarize the plot of a famous novel in one sentence.",
)

PROSE = (
    "The old lighthouse keeper climbed the stairs one last time,",
    "Rain fell on the quiet streets of the city as",
    "She had never believed in ghosts until the night",
    "The letter arrived on a Tuesday, wrapped in brown paper,",
    "Across the valley, the bells of the monastery",
    "He remembered his grandmother's kitchen, the smell of",
    "The train slowed as it approached the border, and",
    "In the spring, the river overflowed its banks and",
    "Nobody in the village knew where the stranger had come from,",
    "The forest was silent except for",
    "When the music stopped, everyone turned to look at",
    "It was the kind of summer that people talk about for years,",
    "The ship's captain studied the horizon and",
    "Her first day at the new school began badly:",
    "The market square filled with voices as",
    "Long after the guests had gone, the house",
    "The detective lit a cigarette and said,",
    "At dawn the fishermen pushed their boats into",
    "The painting had hung in the hallway for a hundred years,",
    "They walked along the beach without speaking, until",
)

WIDE_CODE = (
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "for i in range(10):\n    print(",
    "import os\n\npath = os.path.join(",
    "class Stack:\n    def __init__(self):\n        self.items =",
    "function greet(name) {\n  return `Hello, ${",
    "#include <stdio.h>\n\nint main(void) {\n    printf(",
    "SELECT id, email FROM customers WHERE created_at >",
    "with open('data.txt') as f:\n    lines =",
    "def is_prime(n):\n    for d in range(2, int(n ** 0.5) + 1):\n        if",
    "const items = [1, 2, 3].map((x) =>",
    "try:\n    value = int(text)\nexcept ValueError:\n    value =",
    'git commit -m "',
    "fn main() {\n    let v: Vec<i32> =",
    "df = pd.read_csv('sales.csv')\ndf.groupby(",
    'if __name__ == "__main__":\n    main(',
    "public static void main(String[] args) {\n    System.out.",
    "def sort_by_length(words):\n    return sorted(words, key=",
    "x = torch.randn(3, 4)\ny = x @",
    '<div class="container">\n  <h1>',
    "while queue:\n    node = queue.pop(0)\n    for child in",
)

WIDE_MATH = (
    "What is 17 + 25? The answer is",
    "Solve for x: 3x + 5 = 20. First,",
    "The area of a circle with radius 4 is",
    "If a train travels 60 km in 45 minutes, its speed is",
    "The sum of the angles of a triangle is",
    "Compute 2^10 =",
    "The derivative of sin(x) is",
    "A shop sells pens at 3 dollars each. Five pens cost",
    "The prime factors of 84 are",
    "What is 15% of 240? Answer:",
    "The integral of 2x dx is",
    "If f(x) = x^2 - 4x + 3, then f(2) =",
    "The square root of 144 is",
    "Tom has 12 apples and gives away a third. He has",
    "The least common multiple of 6 and 8 is",
    "Simplify (x^2 - 9) / (x - 3):",
    "A rectangle is 7 cm long and 3 cm wide; its perimeter is",
    "The probability of rolling two sixes with two dice is",
    "Convert 0.375 to a fraction:",
    "The next number in the sequence 2, 4, 8, 16 is",
)

INSTRUCTIONS = (
    "Write a haiku about autumn leaves.",
    "Explain in one sentence why the sky is blue.",
    "List three tips for a good night's sleep.",
    "Give me a recipe for a simple tomato soup.",
    "Rewrite this sentence in a formal tone: gonna be late, sorry.",
    "Suggest a name for a friendly robot.",
    "Summarize the benefits of regular exercise.",
    "Describe a cat to someone who has never seen one.",
    "Write a polite email declining a meeting invitation.",
    "What should I pack for a weekend camping trip?",
    "Explain what a neural network is to a ten-year-old.",
    "Give two arguments for and against remote work.",
    "Translate 'where is the train station' into Spanish.",
    "Write a limerick about a forgetful wizard.",
    "How do I change a flat bicycle tyre?",
    "Recommend three classic novels and say why.",
    "Draft a tweet announcing a new coffee shop.",
    "Explain the difference between weather and climate.",
)

# Shipped probe sets, by name: the seed's first, then SubnetScope's own.
PROBE_SETS: dict[str, tuple[str, ...]] = {
    "generic": GENERIC,  # the first set is the default everywhere
    "math": MATH,
    "code": CODE,
    "commonsense": COMMONSENSE,
    "mixed": GENERIC + MATH + CODE,  # LLGBM `create_mixed_probes`
    "wide": WIDE,
    "wide-math": WIDE_MATH,
    "wide-code": WIDE_CODE,
    "prose": PROSE,
    "instructions": INSTRUCTIONS,
}
SEED_PROBE_SETS = ("generic", "math", "code", "commonsense", "mixed")


def _read_file(path: Path) -> list[str]:
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SubnetScopeError(f"probe file {path} is not UTF-8 text") from exc
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                text = record["text"]
            except (json.JSONDecodeError, TypeError, KeyError):
                raise SubnetScopeError(
                    f'line {number} of {path} is not a JSON object with a "text" field'
                ) from None
            if not isinstance(text, str):
                raise SubnetScopeError(f'line {number} of {path}: "text" must be a string')
            texts.append(text)
    else:
        texts = [line for line in content.splitlines() if line.strip()]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise SubnetScopeError(f"probe file {path} holds no texts")
    return texts


def probe_texts(name_or_path: str) -> list[str]:
    """The texts of a shipped probe set, or of a .txt (one per line) or .jsonl ({"text"}) file."""
    if name_or_path in PROBE_SETS:
        return list(PROBE_SETS[name_or_path])
    path = Path(name_or_path).expanduser()
    if path.suffix in (".txt", ".jsonl"):
        if not path.is_file():
            raise SubnetScopeError(f"probe file not found: {path}")
        return _read_file(path)
    raise SubnetScopeError(
        f"unknown probe set '{name_or_path}': use one of {', '.join(PROBE_SETS)}, "
        "or a .txt (one text per line) or .jsonl file"
    )
