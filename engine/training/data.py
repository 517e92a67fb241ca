"""Training data: the built-in demo prompts, or texts from engine.data, as TRL datasets."""

from __future__ import annotations

from datasets import Dataset

from engine.data import load_texts
from engine.models.generation import has_chat_template
from engine.training.config import DEMO_PROMPTS, TrainConfig

# Open questions a small instruct model answers at length by default; `brevity` rewards short
# answers that end with a period, which it learns within a few dozen steps.
DEMO_QUESTIONS = [
    "What is the capital of France?",
    "Why is the sky blue?",
    "What is a prime number?",
    "How do plants make food?",
    "What is the boiling point of water?",
    "Who wrote Romeo and Juliet?",
    "What is gravity?",
    "How many days are in a week?",
    "What does a computer processor do?",
    "Why do we have seasons?",
    "What is the largest ocean?",
    "What is photosynthesis?",
    "How far is the Moon from Earth?",
    "What is an atom?",
    "What language is spoken in Brazil?",
    "What is the speed of light?",
    "Why do cats purr?",
    "What is a noun?",
    "How does a rainbow form?",
    "What is the tallest mountain?",
    "What is democracy?",
    "How do bees make honey?",
    "What is a volcano?",
    "What is the freezing point of water?",
    "Who painted the Mona Lisa?",
    "What is electricity?",
    "How many continents are there?",
    "What is a galaxy?",
    "Why is exercise healthy?",
    "What is the main gas in air?",
    "What is a verb?",
    "How do fish breathe?",
]


def texts_for(config: TrainConfig) -> list[str]:
    if config.dataset == DEMO_PROMPTS:
        texts = list(DEMO_QUESTIONS)
        return texts[: config.limit] if config.limit else texts
    return load_texts(
        config.dataset, text_field=config.text_field, limit=config.limit, seed=config.seed
    )


def sft_dataset(texts: list[str]) -> Dataset:
    return Dataset.from_dict({"text": texts})


def prompt_dataset(config: TrainConfig, tokenizer) -> Dataset:
    """GRPO prompts: conversational when the tokenizer has a chat template, plain text otherwise."""
    texts = texts_for(config)
    if has_chat_template(tokenizer):
        return Dataset.from_dict({"prompt": [[{"role": "user", "content": t}] for t in texts]})
    return Dataset.from_dict({"prompt": texts})


def tokenized_prompts(config: TrainConfig, tokenizer) -> Dataset:
    """PPO queries: token ids, chat-templated when the tokenizer has a template."""
    rows = []
    for text in texts_for(config):
        if has_chat_template(tokenizer):
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
            )
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        else:
            ids = tokenizer(text)["input_ids"]
        rows.append(list(ids)[-config.max_length :])
    return Dataset.from_dict({"input_ids": rows})
