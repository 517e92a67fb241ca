"""One attribution run: texts from a source (optionally completed by the model), LRP or Wanda."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from engine.attribution.config import ComputeConfig
from engine.attribution.scores import AttributionScores

Progress = Callable[[float, str], None]


def completed(loaded, texts: list[str], tokens: int) -> list[str]:
    """Each text followed by the model's greedy continuation (raw text, no chat template)."""
    from engine.models import generate_text

    return [t + generate_text(loaded, t, max_new_tokens=tokens, chat=False).text for t in texts]


def compute_scores(
    config: ComputeConfig, *, progress: Progress | None = None, loaded=None
) -> AttributionScores:
    """Load (LRP: after patching, in this process only), read texts, attribute."""
    from engine.data import load_texts

    report = progress or (lambda fraction, message: None)
    report(0.0, f"loading {config.model}")
    if loaded is None:
        if config.method == "lrp":
            from engine.attribution.lxt_compat import load_for_lrp

            loaded = load_for_lrp(config.model, rules=config.rules, dtype=config.dtype)
        else:
            from engine.models import load_model

            loaded = load_model(config.model, dtype=config.dtype)
    texts = load_texts(config.samples, limit=config.limit, seed=config.seed)
    explain_from = None
    if config.generate:
        report(0.05, f"completing {len(texts)} texts")
        # explain only what the model says after each prompt, not the prompt itself
        explain_from = [len(loaded.tokenizer(t)["input_ids"]) for t in texts]
        texts = completed(loaded, texts, config.generate)

    def on_sample(done: int, total: int) -> None:
        report(0.1 + 0.85 * done / total, f"{config.method}: {done}/{total} texts")

    if config.method == "lrp":
        from engine.attribution.lrp import lrp_relevance

        rel = lrp_relevance(
            loaded,
            texts,
            max_length=config.max_length,
            keep_weights=config.keep_weights,
            rules=config.rules,
            explain_from=explain_from,
            on_sample=on_sample,
        )
        extra = {f"activation.{layer}": v for layer, v in rel.activation.items()}
        extra |= {f"weight.{layer}": v for layer, v in (rel.weight or {}).items()}
        scores = AttributionScores(
            "lrp",
            rel.neuron,
            {
                "samples": rel.samples,
                "tokens": rel.tokens,
                "target_sum": rel.target_sum,
                "input_sum": rel.input_sum,
                "target_abs": rel.target_abs,
                # the precision the pass ran in, and the conservation gap rounding explains in it
                "precision": rel.precision,
                "conservation_gap": rel.conservation_gap,
                "conservation_tolerance": rel.tolerance,
                "conserved": rel.conserved,
            },
            extra,
        )
    else:
        from engine.attribution.wanda import wanda_scores

        scores = wanda_scores(
            loaded,
            texts,
            max_length=config.max_length,
            keep_weights=config.keep_weights,
            on_sample=on_sample,
        )
    arch = loaded.architecture
    scores.metadata |= {
        **asdict(config),
        "model_name": loaded.display_name,
        "family": arch.family,
        "neurons_per_layer": list(arch.neurons_per_layer),
        "up_modules": [b.up for b in arch.blocks],
        "texts": len(texts),  # `samples` above is the config's text source, not a count
        "dtype_used": str(loaded.dtype).removeprefix("torch."),
    }
    report(1.0, f"{config.method} scores over {len(texts)} texts")
    return scores
