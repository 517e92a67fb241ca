"""TFLite / LiteRT graph explorer: read .tflite, .task and .litertlm files by mmap, tensor values,
dumps, synthetic models; architecture findings and graph diffs over the same graph model."""

from engine.tflite.analysis import (
    layer_groups,
    layer_table,
    op_histogram,
    parameter_bytes,
    repeated_blocks,
)
from engine.tflite.bundles import Section, TFLiteFile, open_file
from engine.tflite.diff import GraphDiff, diff_graphs
from engine.tflite.dump import dump_tensors
from engine.tflite.findings import (
    Finding,
    digest_from_readers,
    find_across,
    find_all,
    findings_table,
)
from engine.tflite.graph import (
    ModelInfo,
    OpInfo,
    Quantization,
    SignatureInfo,
    SubgraphInfo,
    TensorInfo,
    TFLiteError,
)
from engine.tflite.neighbourhood import layer_graph, neighbourhood, to_dot
from engine.tflite.reader import TFLiteReader, open_tflite

__all__ = [
    "Finding",
    "GraphDiff",
    "ModelInfo",
    "OpInfo",
    "Quantization",
    "Section",
    "SignatureInfo",
    "SubgraphInfo",
    "TFLiteError",
    "TFLiteFile",
    "TFLiteReader",
    "TensorInfo",
    "diff_graphs",
    "digest_from_readers",
    "dump_tensors",
    "find_across",
    "find_all",
    "findings_table",
    "layer_graph",
    "layer_groups",
    "layer_table",
    "neighbourhood",
    "op_histogram",
    "open_file",
    "open_tflite",
    "parameter_bytes",
    "repeated_blocks",
    "to_dot",
]
