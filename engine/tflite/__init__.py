"""TFLite / LiteRT graph explorer: read .tflite, .task and .litertlm files by mmap, tensor values,
dumps, synthetic models; architecture findings and graph diffs over the same graph model."""

from engine.lazy import attach

# Loaded on first use (engine/lazy.py): `tflite inspect` reads a file without loading pandas.
__all__ = attach(
    __name__,
    {
        "analysis": (
            "layer_groups",
            "layer_table",
            "op_histogram",
            "parameter_bytes",
            "repeated_blocks",
        ),
        "bundles": ("Section", "TFLiteFile", "open_file"),
        "converted.build": ("ConvertedSample", "built_samples", "converted_root"),
        "converted.specs": ("SAMPLES", "SampleSpec"),
        "diff": ("GraphDiff", "diff_graphs"),
        "diff_summary": ("DiffSummary", "summarize"),
        "dump": ("dump_tensors",),
        "findings": ("Finding", "digest_from_readers", "find_across", "find_all", "findings_table"),
        "graph": (
            "ModelInfo",
            "OpInfo",
            "Quantization",
            "SignatureInfo",
            "SubgraphInfo",
            "TensorInfo",
            "TFLiteError",
        ),
        "neighbourhood": ("layer_graph", "neighbourhood", "to_dot"),
        "reader": ("TFLiteReader", "open_tflite"),
        "recovered": ("RecoveredConfig", "load_hf_config", "recover_config"),
        "samples": ("ensure_samples", "list_tflite_files", "save_upload", "tflite_roots"),
        "tensor_view": ("pooled_2d", "tensor_stats", "value_sample"),
        "weights": ("WeightMatch", "converted_source", "match_weights"),
    },
)
