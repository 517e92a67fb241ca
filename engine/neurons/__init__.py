"""One neuron seen from every view: passports, neuron sets and their overlaps."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `import engine.neurons.<light module>` stays light.
__all__ = attach(
    __name__,
    {
        "overlap": ("NeuronSet", "overlap", "overlap_matrix"),
        "passport": ("Passport", "passport"),
        "sets": ("DEFAULT_TOP", "known_sets", "list_set"),
        "space": ("NeuronSpace", "architecture_of", "space_of"),
    },
)
