"""Content-addressed artifacts: fingerprints of inputs, cache keys, and an atomic on-disk store."""

from engine.cache.fingerprint import cache_key, canonical_json, fingerprint_model, fingerprint_path
from engine.cache.store import ArtifactStore, Entry, Writer

__all__ = [
    "ArtifactStore",
    "Entry",
    "Writer",
    "cache_key",
    "canonical_json",
    "fingerprint_model",
    "fingerprint_path",
]
