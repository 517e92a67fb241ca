"""Text data: local files, the offline demo corpus, hub datasets, seeded samples, token windows."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.data.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "corpus": ("demo_code_corpus", "demo_general_corpus"),
        "formats": ("Example", "format_prompt"),
        "sources": ("DEMO_CODE", "DEMO_GENERAL", "TextSource", "load_texts", "sample_texts"),
        "windows": ("token_windows",),
        "lora_tasks": ("DEMO_HELD_OUT", "LORA_TASKS", "LoraTask", "task_prompts"),
    },
)
