"""SubnetScope's headless engine: models, data, cache (and, as they land, the analysis areas)."""

__version__ = "0.1.0"
