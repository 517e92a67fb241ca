"""Weights back to their source: each TFLite constant matched to the Hugging Face parameter it
came from, with the difference between the dequantized values and the originals (issue 18)."""

from engine.tflite.weights.match import match_weights
from engine.tflite.weights.result import UnmatchedParam, UnmatchedTensor, WeightMatch, WeightRow
from engine.tflite.weights.sources import converted_source

__all__ = [
    "UnmatchedParam",
    "UnmatchedTensor",
    "WeightMatch",
    "WeightRow",
    "converted_source",
    "match_weights",
]
